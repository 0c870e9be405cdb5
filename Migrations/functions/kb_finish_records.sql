-- Finishes a request's money and idempotency state in its own statement's transaction (the caller inserts the audit
-- row in the same statement): settles, releases or marks unknown its reservation (kb_settle); completes its records
-- with the answer, each kept for its own window from now on (a duplicate window shorter than the request's lease no
-- longer lets a parallel identical request take over a live record), or hands them back to an earlier request whose
-- outcome stays unknown (`p_restore_owner`), or drops them; adds a settled PaymentIntent's or charge's amount to what
-- was counted for it; counts a request no reserve step counted.
-- The signature of 0004 (without windows, restore owner and counted object) is dropped first.
DROP FUNCTION IF EXISTS kb_finish_records(TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT[], TEXT, TEXT[], INTEGER, JSONB, BYTEA, TEXT, DATE);
CREATE OR REPLACE FUNCTION kb_finish_records(
    p_tenant_id TEXT, p_owner_id TEXT, p_vendor TEXT, p_reservation_id TEXT, p_outcome TEXT, p_actual BIGINT,
    p_complete_scopes TEXT[], p_complete_windows INTEGER[], p_record_state TEXT, p_restore_owner TEXT, p_drop_scopes TEXT[],
    p_status INTEGER, p_headers JSONB, p_body BYTEA, p_counted_object TEXT, p_count_usage_month DATE
) RETURNS VOID LANGUAGE plpgsql AS $fn$
DECLARE
    v_counted BIGINT;
BEGIN
    -- Idempotency records first, in scope order (the order kb_claim_and_reserve claims them), then the counters.
    PERFORM 1 FROM idempotency_records
    WHERE tenant_id = p_tenant_id AND scope = ANY(p_complete_scopes || p_drop_scopes) ORDER BY scope FOR UPDATE;
    IF p_reservation_id IS NOT NULL THEN
        PERFORM kb_settle(p_reservation_id, p_outcome, p_actual);
    END IF;
    IF cardinality(p_complete_scopes) > 0 THEN
        UPDATE idempotency_records i SET state = p_record_state, response_status = p_status,
            response_headers = p_headers, response_body = p_body,
            owner_id = COALESCE(p_restore_owner, i.owner_id),
            expires_at = now() + make_interval(secs => w.window_seconds)
        FROM unnest(p_complete_scopes, p_complete_windows) AS w(scope, window_seconds)
        WHERE i.tenant_id = p_tenant_id AND i.scope = w.scope AND i.owner_id = p_owner_id;
    END IF;
    IF cardinality(p_drop_scopes) > 0 THEN
        DELETE FROM idempotency_records WHERE tenant_id = p_tenant_id AND scope = ANY(p_drop_scopes) AND owner_id = p_owner_id;
    END IF;
    IF p_counted_object IS NOT NULL AND p_reservation_id IS NOT NULL THEN
        SELECT COALESCE(settled_micros, amount_micros) INTO v_counted FROM reservations WHERE id = p_reservation_id;
        INSERT INTO priced_objects (tenant_id, vendor, object_id, audit_id, counted_micros)
        VALUES (p_tenant_id, p_vendor, p_counted_object, p_owner_id, COALESCE(v_counted, 0))
        ON CONFLICT (tenant_id, vendor, object_id) DO UPDATE SET counted_micros = priced_objects.counted_micros + EXCLUDED.counted_micros;
    END IF;
    -- A request with no quota to check (a pro tenant's unpriced call) is counted here, in a random shard.
    IF p_count_usage_month IS NOT NULL THEN
        INSERT INTO tenant_monthly_usage (tenant_id, month, shard, requests)
        VALUES (p_tenant_id, p_count_usage_month, kb_usage_shard(false), 1)
        ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = tenant_monthly_usage.requests + 1;
    END IF;
END;
$fn$;
