-- The tenant declares what happened to a request whose outcome was unknown: 'settled' (with the amount that
-- moved, at most what was reserved) or 'released'. Moves the reservation once and appends the resolution event.
CREATE OR REPLACE FUNCTION kb_resolve(p_tenant_id TEXT, p_audit_id TEXT, p_outcome TEXT, p_amount BIGINT, p_event JSONB)
RETURNS TABLE (result TEXT, reserved BIGINT) LANGUAGE plpgsql AS $fn$
DECLARE
    r RECORD;
BEGIN
    SELECT * INTO r FROM reservations WHERE id = p_audit_id AND tenant_id = p_tenant_id FOR UPDATE;
    IF NOT FOUND THEN RETURN QUERY SELECT 'no_reservation'::TEXT, 0::BIGINT; RETURN; END IF;
    IF r.state <> 'unknown' THEN RETURN QUERY SELECT ('already_' || r.state)::TEXT, r.amount_micros; RETURN; END IF;
    IF p_outcome = 'settled' AND (p_amount IS NULL OR p_amount > r.amount_micros) THEN
        RETURN QUERY SELECT 'amount_too_large'::TEXT, r.amount_micros; RETURN;
    END IF;
    PERFORM kb_settle(p_audit_id, p_outcome, p_amount);
    -- Named columns: the table's generated filter columns (0014) take no value.
    INSERT INTO audit_events (id, tenant_id, key_id, key_label, vendor, method, path, operation, decision, error_code,
                              state, upstream_status, amount_minor, currency, amount_micros, idempotency_key, idempotency_auto,
                              upstream_request_id, run_id, outcome, duplicate_of, resolves, overhead_us, upstream_us,
                              vendor_account, attempts, created_at)
    SELECT e.id, e.tenant_id, e.key_id, e.key_label, e.vendor, e.method, e.path, e.operation, e.decision, e.error_code,
           e.state, e.upstream_status, e.amount_minor, e.currency, e.amount_micros, e.idempotency_key, e.idempotency_auto,
           e.upstream_request_id, e.run_id, e.outcome, e.duplicate_of, e.resolves, e.overhead_us, e.upstream_us,
           e.vendor_account, e.attempts, e.created_at
    FROM jsonb_populate_record(NULL::audit_events, jsonb_build_object('created_at', now()) || p_event) e;
    -- Released: nothing was sent, so an identical retry may go through now.
    IF p_outcome = 'released' THEN
        DELETE FROM idempotency_records WHERE tenant_id = p_tenant_id AND owner_id = p_audit_id AND state = 'unknown';
    END IF;
    RETURN QUERY SELECT 'ok'::TEXT, r.amount_micros;
END;
$fn$;
