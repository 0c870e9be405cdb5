-- Several requests on one key claimed and reserved in one transaction (one round trip, one commit, the key's counters
-- locked once): what a replica sends when requests for a key arrive while its previous claim-and-reserve is still in
-- flight (ClaimReserveBatcher). Items are processed in order, each exactly as kb_claim_and_reserve would; scopes are
-- flattened with their item's index.
CREATE OR REPLACE FUNCTION kb_claim_and_reserve_many(
    p_tenant_id TEXT, p_owner_ids TEXT[], p_amounts BIGINT[],
    p_scope_items INTEGER[], p_scopes TEXT[], p_hashes TEXT[], p_upstream_keys TEXT[], p_ttl_seconds INTEGER[],
    p_key_id TEXT, p_day DATE, p_month DATE, p_usage_month DATE, p_free_quota BIGINT
) RETURNS TABLE (item INTEGER, result TEXT, used BIGINT, cap BIGINT, claimed TEXT[]) LANGUAGE plpgsql AS $fn$
DECLARE
    r RECORD;
BEGIN
    FOR i IN 1..cardinality(p_owner_ids) LOOP
        SELECT * INTO r FROM kb_claim_and_reserve(
            p_tenant_id, p_owner_ids[i],
            ARRAY(SELECT c.scope FROM unnest(p_scope_items, p_scopes) AS c(it, scope) WHERE c.it = i ORDER BY c.scope),
            ARRAY(SELECT c.hash FROM unnest(p_scope_items, p_scopes, p_hashes) AS c(it, scope, hash) WHERE c.it = i ORDER BY c.scope),
            ARRAY(SELECT c.uk FROM unnest(p_scope_items, p_scopes, p_upstream_keys) AS c(it, scope, uk) WHERE c.it = i ORDER BY c.scope),
            ARRAY(SELECT c.ttl FROM unnest(p_scope_items, p_scopes, p_ttl_seconds) AS c(it, scope, ttl) WHERE c.it = i ORDER BY c.scope),
            p_key_id, p_amounts[i], p_day, p_month, p_usage_month, p_free_quota);
        item := i; result := r.result; used := r.used; cap := r.cap; claimed := r.claimed;
        RETURN NEXT;
    END LOOP;
END;
$fn$;
