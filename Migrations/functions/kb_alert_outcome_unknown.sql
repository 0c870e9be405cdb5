-- `request.outcome_unknown`: a held reservation became unknown (upstream 5xx, timeout, lost connection, or a lease
-- that ran out), written by kb_settle in that transaction. `audit_id` is what POST /v1/audit/{id}/resolve takes.
CREATE OR REPLACE FUNCTION kb_alert_outcome_unknown(p_tenant_id TEXT, p_key_id TEXT, p_audit_id TEXT, p_amount BIGINT)
RETURNS VOID LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO events (id, tenant_id, type, key_id, dedupe_key, data)
    VALUES (kb_event_id(), p_tenant_id, 'request.outcome_unknown', p_key_id, 'unknown:' || p_audit_id,
            kb_alert_key_data(p_key_id) || jsonb_build_object(
                'audit_id', p_audit_id, 'amount_usd', kb_usd(p_amount), 'amount_micros', p_amount,
                'resolve', 'POST /v1/audit/' || p_audit_id || '/resolve'))
    ON CONFLICT (dedupe_key) DO NOTHING;
END;
$fn$;
