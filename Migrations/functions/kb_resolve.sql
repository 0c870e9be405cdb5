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
    INSERT INTO audit_events
    SELECT * FROM jsonb_populate_record(NULL::audit_events, jsonb_build_object('created_at', now()) || p_event);
    -- Released: nothing was sent, so an identical retry may go through now.
    IF p_outcome = 'released' THEN
        DELETE FROM idempotency_records WHERE tenant_id = p_tenant_id AND owner_id = p_audit_id AND state = 'unknown';
    END IF;
    RETURN QUERY SELECT 'ok'::TEXT, r.amount_micros;
END;
$fn$;
