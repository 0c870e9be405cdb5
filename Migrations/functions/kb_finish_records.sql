-- Finishes a request's money and idempotency state in its own statement's transaction: settles or releases its
-- reservation, completes or drops its idempotency records and remembers a priced object. The caller inserts the
-- audit row in the same statement (typed columns; the JSON round trip of the old kb_finish showed in profiles).
-- (Replaced kb_finish in 0004_hot_path.sql, which dropped it.)
CREATE OR REPLACE FUNCTION kb_finish_records(
    p_tenant_id TEXT, p_owner_id TEXT, p_vendor TEXT, p_reservation_id TEXT, p_outcome TEXT, p_actual BIGINT,
    p_complete_scopes TEXT[], p_record_state TEXT, p_drop_scopes TEXT[],
    p_status INTEGER, p_headers JSONB, p_body BYTEA, p_priced_object TEXT, p_count_usage_month DATE
) RETURNS VOID LANGUAGE plpgsql AS $fn$
BEGIN
    -- Idempotency records first, in scope order (the order kb_begin claims them), then the counters.
    PERFORM 1 FROM idempotency_records
    WHERE tenant_id = p_tenant_id AND scope = ANY(p_complete_scopes || p_drop_scopes) ORDER BY scope FOR UPDATE;
    IF p_reservation_id IS NOT NULL THEN
        PERFORM kb_settle(p_reservation_id, p_outcome, p_actual);
    END IF;
    IF cardinality(p_complete_scopes) > 0 THEN
        UPDATE idempotency_records SET state = p_record_state, response_status = p_status,
            response_headers = p_headers, response_body = p_body
        WHERE tenant_id = p_tenant_id AND scope = ANY(p_complete_scopes) AND owner_id = p_owner_id;
    END IF;
    IF cardinality(p_drop_scopes) > 0 THEN
        DELETE FROM idempotency_records WHERE tenant_id = p_tenant_id AND scope = ANY(p_drop_scopes) AND owner_id = p_owner_id;
    END IF;
    IF p_priced_object IS NOT NULL THEN
        INSERT INTO priced_objects (tenant_id, vendor, object_id, audit_id)
        VALUES (p_tenant_id, p_vendor, p_priced_object, p_owner_id) ON CONFLICT DO NOTHING;
    END IF;
    -- A request with no quota to check (a pro tenant's unpriced call) is counted here, in a random shard.
    IF p_count_usage_month IS NOT NULL THEN
        INSERT INTO tenant_monthly_usage (tenant_id, month, shard, requests)
        VALUES (p_tenant_id, p_count_usage_month, kb_usage_shard(false), 1)
        ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = tenant_monthly_usage.requests + 1;
    END IF;
END;
$fn$;
