-- Moves a reservation to its outcome: 'settled' (with the actual amount), 'released' (nothing moved) or 'unknown'
-- (kept counted until resolved). Only a reservation in 'held' or 'unknown' moves; returns the state it had, or NULL
-- if there was nothing to move. The counters change only by the difference: all of a release, the unspent part of
-- a lower settlement, and — a settlement above the reservation (Twilio reports the real price after the estimate was
-- reserved) — the part above it, so the ledger always counts at least what moved. A settlement at the reserved
-- amount leaves them alone. The counters are those of the key's whole chain (kb_reserve counted it on each), locked in
-- kb_reserve's order.
-- Budget alerts (DESIGN §14): a settlement above the reservation moves the counters up and may cross a threshold
-- (kb_alert_spend, under the same locks); an outcome that becomes unknown writes `request.outcome_unknown` with the
-- audit id to resolve. Both in this statement's transaction, with the change they report.
CREATE OR REPLACE FUNCTION kb_settle(p_reservation_id TEXT, p_outcome TEXT, p_actual BIGINT)
RETURNS TEXT LANGUAGE plpgsql AS $fn$
DECLARE
    r RECORD;
    v_settled BIGINT;
    v_uncounted BIGINT;
    v_chain TEXT[];
    c RECORD;
BEGIN
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id FOR UPDATE;
    IF NOT FOUND OR r.state NOT IN ('held', 'unknown') THEN RETURN NULL; END IF;
    v_settled := GREATEST(COALESCE(p_actual, r.amount_micros), 0);
    -- What stops counting (a release, the unspent part of a lower settlement), or, negative, what starts counting on
    -- top of the reservation (a settlement above it).
    v_uncounted := CASE p_outcome WHEN 'released' THEN r.amount_micros WHEN 'settled' THEN r.amount_micros - v_settled ELSE 0 END;
    IF v_uncounted <> 0 THEN
        SELECT ancestor_ids || r.key_id INTO v_chain FROM vault_keys WHERE id = r.key_id;
        PERFORM 1 FROM spend_counters
        WHERE key_id = ANY(v_chain) AND ((period = 'day' AND period_start = r.day) OR (period = 'month' AND period_start = r.month)
           OR (period = 'total' AND period_start = DATE '1970-01-01'))
        ORDER BY array_position(v_chain, key_id), period FOR UPDATE;
        UPDATE spend_counters SET counted_micros = counted_micros - v_uncounted
        WHERE key_id = ANY(v_chain) AND ((period = 'day' AND period_start = r.day) OR (period = 'month' AND period_start = r.month)
           OR (period = 'total' AND period_start = DATE '1970-01-01'));
        IF v_uncounted < 0 THEN
            FOR c IN SELECT s.key_id, s.period, s.period_start, s.counted_micros,
                            CASE s.period WHEN 'day' THEN k.daily_cap_micros WHEN 'month' THEN k.monthly_cap_micros ELSE k.total_cap_micros END AS cap
                     FROM spend_counters s JOIN vault_keys k ON k.id = s.key_id
                     WHERE s.key_id = ANY(v_chain) AND ((s.period = 'day' AND s.period_start = r.day) OR (s.period = 'month' AND s.period_start = r.month)
                        OR (s.period = 'total' AND s.period_start = DATE '1970-01-01')) LOOP
                PERFORM kb_alert_spend(r.tenant_id, c.key_id, c.period, c.period_start, c.counted_micros + v_uncounted, c.counted_micros, c.cap);
            END LOOP;
        END IF;
    END IF;
    IF p_outcome = 'unknown' AND r.state = 'held' THEN
        PERFORM kb_emit_event(r.tenant_id, 'request.outcome_unknown', r.key_id, kb_key_event_data(r.key_id) || jsonb_build_object(
            'audit_id', r.id, 'amount_usd', kb_usd(r.amount_micros), 'amount_micros', r.amount_micros));
    END IF;
    UPDATE reservations SET state = p_outcome,
        settled_micros = CASE WHEN p_outcome = 'settled' THEN v_settled ELSE NULL END, updated_at = now()
    WHERE id = p_reservation_id;
    RETURN r.state;
END;
$fn$;
