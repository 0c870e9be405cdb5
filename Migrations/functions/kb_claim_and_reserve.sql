-- Claims a request's idempotency records and, when it got all of them, reserves its money: one round trip, one
-- commit. 'claims_partial' (with the scopes it did get) means another request holds a record: nothing was reserved
-- and the caller looks at the record. A reserve denial gives the claims back.
CREATE OR REPLACE FUNCTION kb_claim_and_reserve(
    p_tenant_id TEXT, p_owner_id TEXT, p_scopes TEXT[], p_hashes TEXT[], p_upstream_keys TEXT[], p_ttl_seconds INTEGER[],
    p_key_id TEXT, p_amount BIGINT, p_day DATE, p_month DATE, p_usage_month DATE, p_free_quota BIGINT
) RETURNS TABLE (result TEXT, used BIGINT, cap BIGINT, claimed TEXT[]) LANGUAGE plpgsql AS $fn$
DECLARE
    v_claimed TEXT[] := kb_claim(p_tenant_id, p_owner_id, p_scopes, p_hashes, p_upstream_keys, p_ttl_seconds);
    r RECORD;
BEGIN
    IF cardinality(v_claimed) < cardinality(p_scopes) THEN
        RETURN QUERY SELECT 'claims_partial'::TEXT, 0::BIGINT, 0::BIGINT, v_claimed; RETURN;
    END IF;
    SELECT * INTO r FROM kb_reserve(p_key_id, p_tenant_id, p_amount, p_day, p_month, p_usage_month, p_free_quota, p_owner_id);
    IF r.result <> 'ok' THEN
        DELETE FROM idempotency_records WHERE tenant_id = p_tenant_id AND scope = ANY(v_claimed) AND owner_id = p_owner_id;
        v_claimed := '{}';
    END IF;
    RETURN QUERY SELECT r.result, r.used, r.cap, v_claimed;
END;
$fn$;
