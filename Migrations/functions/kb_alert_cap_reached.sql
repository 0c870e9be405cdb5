-- `key.cap.reached`: the first denial at a cap in a period, written by kb_reserve's denial (same transaction, the
-- counters locked). Later denials at the same cap and period find the event and write nothing. `p_cap_key_id` is the
-- key whose cap refused (an ancestor's, for a child's request: `requested_by_key_id` says whose request it was).
CREATE OR REPLACE FUNCTION kb_alert_cap_reached(
    p_tenant_id TEXT, p_key_id TEXT, p_cap_key_id TEXT, p_period TEXT, p_day DATE, p_month DATE,
    p_cap BIGINT, p_spent BIGINT, p_amount BIGINT, p_audit_id TEXT
) RETURNS VOID LANGUAGE plpgsql AS $fn$
DECLARE
    v_field TEXT := CASE p_period WHEN 'day' THEN 'daily_usd_cap' WHEN 'month' THEN 'monthly_usd_cap' ELSE 'total_usd_cap' END;
    v_period TEXT := CASE p_period WHEN 'day' THEN to_char(p_day, 'YYYY-MM-DD') WHEN 'month' THEN to_char(p_month, 'YYYY-MM') ELSE 'total' END;
    v_dedupe TEXT;
BEGIN
    v_dedupe := 'cap:' || p_cap_key_id || ':' || v_field || ':' || v_period;
    PERFORM 1 FROM events WHERE dedupe_key = v_dedupe;
    IF FOUND THEN RETURN; END IF;
    INSERT INTO events (id, tenant_id, type, key_id, period, dedupe_key, data)
    VALUES (kb_event_id(), p_tenant_id, 'key.cap.reached', p_cap_key_id, v_period, v_dedupe,
            kb_alert_key_data(p_cap_key_id) || jsonb_build_object(
                'cap_field', v_field, 'period', v_period, 'cap_usd', kb_usd(p_cap), 'spent_usd', kb_usd(p_spent),
                'requested_usd', kb_usd(p_amount), 'cap_micros', p_cap, 'spent_micros', p_spent, 'requested_micros', p_amount,
                'requested_by_key_id', p_key_id, 'audit_id', p_audit_id))
    ON CONFLICT (dedupe_key) DO NOTHING;
END;
$fn$;
