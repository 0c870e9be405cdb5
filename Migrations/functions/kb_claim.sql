-- Claims a request's idempotency records: new scopes, and expired completed or unknown records taken over, in scope
-- order (the order kb_finish_records locks them). Returns the scopes claimed; the others are live records of other
-- requests. An in-flight record whose lease ran out is first turned into an unknown outcome (kb_expire_in_flight):
-- its request died, and the vendor may have acted.
CREATE OR REPLACE FUNCTION kb_claim(
    p_tenant_id TEXT, p_owner_id TEXT, p_scopes TEXT[], p_hashes TEXT[], p_upstream_keys TEXT[], p_ttl_seconds INTEGER[]
) RETURNS TEXT[] LANGUAGE plpgsql AS $fn$
DECLARE
    v_claimed TEXT[];
BEGIN
    PERFORM kb_expire_in_flight(p_tenant_id, i.scope) FROM idempotency_records i
    WHERE i.tenant_id = p_tenant_id AND i.scope = ANY(p_scopes) AND i.state = 'in_flight' AND i.expires_at <= now();
    WITH claimed AS (
        INSERT INTO idempotency_records (tenant_id, scope, request_hash, state, owner_id, reservation_id, upstream_key, expires_at)
        SELECT p_tenant_id, c.scope, c.hash, 'in_flight', p_owner_id, p_owner_id, NULLIF(c.upstream_key, ''), now() + make_interval(secs => c.ttl)
        FROM unnest(p_scopes, p_hashes, p_upstream_keys, p_ttl_seconds) AS c(scope, hash, upstream_key, ttl)
        ORDER BY c.scope
        ON CONFLICT (tenant_id, scope) DO UPDATE SET
            request_hash = EXCLUDED.request_hash, state = 'in_flight', owner_id = EXCLUDED.owner_id,
            reservation_id = EXCLUDED.reservation_id, upstream_key = EXCLUDED.upstream_key,
            response_status = NULL, response_headers = NULL, response_body = NULL,
            created_at = now(), expires_at = EXCLUDED.expires_at
        WHERE idempotency_records.expires_at <= now() AND idempotency_records.state <> 'in_flight'
        RETURNING scope
    )
    SELECT COALESCE(array_agg(scope), '{}') INTO v_claimed FROM claimed;
    RETURN v_claimed;
END;
$fn$;
