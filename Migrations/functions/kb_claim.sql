-- Claims a request's idempotency records: new scopes, and expired records taken over, in scope order (the order
-- kb_finish_records locks them). Returns the scopes claimed; the others are live records of other requests.
CREATE OR REPLACE FUNCTION kb_claim(
    p_tenant_id TEXT, p_owner_id TEXT, p_scopes TEXT[], p_hashes TEXT[], p_upstream_keys TEXT[], p_ttl_seconds INTEGER[]
) RETURNS TEXT[] LANGUAGE plpgsql AS $fn$
DECLARE
    v_claimed TEXT[];
BEGIN
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
        WHERE idempotency_records.expires_at <= now()
        RETURNING scope
    )
    SELECT COALESCE(array_agg(scope), '{}') INTO v_claimed FROM claimed;
    RETURN v_claimed;
END;
$fn$;
