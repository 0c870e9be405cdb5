-- Turns one in-flight record whose lease ran out into an unknown outcome: the request that held it died, and the
-- vendor may have acted, so it is never "free to take". Its reservation, if still held, becomes `unknown` (still
-- counted) and the request's audit row (written when it reserved) says state `lease_expired`, `outcome_unknown`, so the
-- tenant sees it in `GET /v1/audit?outcome=outcome_unknown` and can resolve it; retries follow the unknown-outcome rules (Stripe and
-- Resend: resent with the same upstream key; Twilio: 409 `outcome_unknown`). Returns 1 if it expired a reservation.
CREATE OR REPLACE FUNCTION kb_expire_in_flight(p_tenant_id TEXT, p_scope TEXT) RETURNS INTEGER LANGUAGE plpgsql AS $fn$
DECLARE
    rec RECORD;
    res RECORD;
    k RECORD;
BEGIN
    UPDATE idempotency_records SET state = 'unknown', expires_at = now() + interval '24 hours'
    WHERE tenant_id = p_tenant_id AND scope = p_scope AND state = 'in_flight' AND expires_at <= now()
    RETURNING reservation_id, owner_id INTO rec;
    IF NOT FOUND OR rec.reservation_id IS NULL THEN RETURN 0; END IF;
    SELECT * INTO res FROM reservations WHERE id = rec.reservation_id FOR UPDATE;
    IF NOT FOUND OR res.state <> 'held' THEN RETURN 0; END IF;
    PERFORM kb_settle(res.id, 'unknown', NULL);
    -- The request wrote its row when it reserved (state in_flight): that row now says what became of it.
    UPDATE audit_events SET state = 'lease_expired', outcome = 'outcome_unknown'
    WHERE id = res.id AND tenant_id = res.tenant_id AND state = 'in_flight';
    IF FOUND THEN RETURN 1; END IF;
    -- A reservation made before rows were written at reserve time: a row of its own, resolving the request.
    SELECT label, vendor INTO k FROM vault_keys WHERE id = res.key_id;
    INSERT INTO audit_events (id, tenant_id, key_id, key_label, vendor, method, path, decision, state,
                              amount_micros, outcome, resolves, created_at)
    VALUES ('aud_' || substr(md5(random()::text || clock_timestamp()::text || res.id), 1, 22), res.tenant_id, res.key_id,
            k.label, COALESCE(k.vendor, 'unknown'), 'POST',
            CASE WHEN p_scope LIKE 'idem:%' THEN split_part(p_scope, ':', 4) ELSE '-' END,
            'resolved', 'lease_expired', res.amount_micros, 'outcome_unknown', res.id, now());
    RETURN 1;
END;
$fn$;
