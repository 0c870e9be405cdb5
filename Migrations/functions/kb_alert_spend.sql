-- A key's counter for one period moved from p_old to p_new (micro-USD) under its row lock, which the caller holds
-- (kb_reserve, kb_settle): writes a `key.spend.threshold_crossed` event for each of the key's alert thresholds
-- (percent of p_cap; default 50, 80, 100) that the move crossed and that was not yet announced for this period.
-- The mark is kept on the counter row itself, under that lock: one event per threshold per period, exactly, across
-- replicas, even when a release takes the counter back below the threshold and a later request crosses it again.
-- Callers call it only when the integer percent moved (p_old*100/cap < p_new*100/cap): most requests never do.
CREATE OR REPLACE FUNCTION kb_alert_spend(
    p_tenant_id TEXT, p_key_id TEXT, p_period TEXT, p_start DATE, p_old BIGINT, p_new BIGINT, p_cap BIGINT
) RETURNS VOID LANGUAGE plpgsql AS $fn$
DECLARE
    v_thresholds SMALLINT[];
    v_crossed SMALLINT[];
    t SMALLINT;
BEGIN
    IF p_cap IS NULL OR p_cap <= 0 OR p_new <= p_old THEN RETURN; END IF;
    SELECT COALESCE(alert_thresholds, '{50,80,100}') INTO v_thresholds FROM vault_keys WHERE id = p_key_id;
    SELECT array_agg(x ORDER BY x) INTO v_crossed FROM unnest(v_thresholds) AS x
    WHERE p_old * 100 < x::bigint * p_cap AND x::bigint * p_cap <= p_new * 100;
    IF v_crossed IS NULL THEN RETURN; END IF;
    FOREACH t IN ARRAY v_crossed LOOP
        UPDATE spend_counters SET alerted_percents = COALESCE(alerted_percents, '{}') || t
        WHERE key_id = p_key_id AND period = p_period AND period_start = p_start
          AND NOT (COALESCE(alerted_percents, '{}') @> ARRAY[t]);
        IF FOUND THEN
            PERFORM kb_emit_event(p_tenant_id, 'key.spend.threshold_crossed', p_key_id,
                kb_key_event_data(p_key_id) || kb_period_data(p_period, p_start) || jsonb_build_object(
                    'threshold_percent', t, 'cap_usd', kb_usd(p_cap), 'spent_usd', kb_usd(p_new),
                    'cap_micros', p_cap, 'spent_micros', p_new));
        END IF;
    END LOOP;
END;
$fn$;

-- A cap refused a request: the first refusal at that cap in its period writes `key.cap.reached` (marked on the
-- counter row, which the caller holds locked).
CREATE OR REPLACE FUNCTION kb_alert_cap(
    p_tenant_id TEXT, p_key_id TEXT, p_period TEXT, p_start DATE, p_used BIGINT, p_cap BIGINT, p_requested BIGINT
) RETURNS VOID LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE spend_counters SET cap_reached = true
    WHERE key_id = p_key_id AND period = p_period AND period_start = p_start AND cap_reached IS NOT TRUE;
    IF FOUND THEN
        PERFORM kb_emit_event(p_tenant_id, 'key.cap.reached', p_key_id,
            kb_key_event_data(p_key_id) || kb_period_data(p_period, p_start) || jsonb_build_object(
                'cap_usd', kb_usd(p_cap), 'spent_usd', kb_usd(p_used), 'requested_usd', kb_usd(p_requested),
                'cap_micros', p_cap, 'spent_micros', p_used, 'requested_micros', p_requested));
    END IF;
END;
$fn$;
