-- Hot path (issue 6, measured with `make bench`; see README "Benchmarks"):
--   * request counting no longer serialises a tenant's requests on one row: tenants without a quota count into
--     one of 16 shards picked at random; the free plan keeps one locked row (shard 0), which is what makes its
--     quota exact;
--   * kb_reserve locks the key's two ledger rows with one statement and updates them with one;
--   * kb_begin claims a request's idempotency records and reserves its money in one round trip;
--   * kb_finish locks idempotency records before the ledger, the order kb_begin uses.
-- Money semantics are unchanged.

ALTER TABLE tenant_monthly_usage ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0 CHECK (shard BETWEEN 0 AND 15);
ALTER TABLE tenant_monthly_usage DROP CONSTRAINT tenant_monthly_usage_pkey;
ALTER TABLE tenant_monthly_usage ADD PRIMARY KEY (tenant_id, month, shard);

-- Counts one request for a tenant without a quota (no lock shared with its other requests).
CREATE FUNCTION kb_count_request(p_tenant_id TEXT, p_month DATE) RETURNS VOID LANGUAGE sql AS $fn$
    INSERT INTO tenant_monthly_usage (tenant_id, month, shard, requests)
    VALUES (p_tenant_id, p_month, floor(random() * 16)::smallint, 1)
    ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = tenant_monthly_usage.requests + 1;
$fn$;

CREATE OR REPLACE FUNCTION kb_reserve(
    p_key_id TEXT, p_tenant_id TEXT, p_amount BIGINT, p_day DATE, p_month DATE,
    p_usage_month DATE, p_free_quota BIGINT, p_reservation_id TEXT
) RETURNS TABLE (result TEXT, used BIGINT, cap BIGINT) LANGUAGE plpgsql AS $fn$
DECLARE
    k RECORD;
    v_plan TEXT;
    v_rows INTEGER;
    v_day BIGINT := 0;
    v_month BIGINT := 0;
    v_requests BIGINT;
BEGIN
    SELECT status, expires_at, daily_cap_micros, monthly_cap_micros, max_request_micros INTO k
    FROM vault_keys WHERE id = p_key_id AND tenant_id = p_tenant_id;
    IF NOT FOUND OR k.status <> 'active' THEN
        RETURN QUERY SELECT 'vault_key_revoked'::TEXT, 0::BIGINT, 0::BIGINT; RETURN;
    END IF;
    IF k.expires_at IS NOT NULL AND k.expires_at <= now() THEN
        RETURN QUERY SELECT 'vault_key_expired'::TEXT, 0::BIGINT, 0::BIGINT; RETURN;
    END IF;
    IF k.max_request_micros IS NOT NULL AND p_amount > k.max_request_micros THEN
        RETURN QUERY SELECT 'request_cap_exceeded'::TEXT, p_amount, k.max_request_micros; RETURN;
    END IF;

    IF p_amount > 0 THEN
        -- Lock the key's day and month rows (day first: every writer uses this order) and read both caps' usage.
        FOR attempt IN 1..2 LOOP
            SELECT count(*), COALESCE(max(total) FILTER (WHERE period = 'day'), 0), COALESCE(max(total) FILTER (WHERE period = 'month'), 0)
            INTO v_rows, v_day, v_month
            FROM (SELECT period, settled_micros + reserved_micros + unknown_micros AS total FROM spend_ledger
                  WHERE key_id = p_key_id AND ((period = 'day' AND period_start = p_day) OR (period = 'month' AND period_start = p_month))
                  ORDER BY period FOR UPDATE) locked;
            EXIT WHEN v_rows = 2;
            INSERT INTO spend_ledger (key_id, period, period_start)
            VALUES (p_key_id, 'day', p_day), (p_key_id, 'month', p_month)
            ON CONFLICT DO NOTHING;
        END LOOP;
        IF k.daily_cap_micros IS NOT NULL AND v_day + p_amount > k.daily_cap_micros THEN
            RETURN QUERY SELECT 'daily_usd_cap_exceeded'::TEXT, v_day, k.daily_cap_micros; RETURN;
        END IF;
        IF k.monthly_cap_micros IS NOT NULL AND v_month + p_amount > k.monthly_cap_micros THEN
            RETURN QUERY SELECT 'monthly_usd_cap_exceeded'::TEXT, v_month, k.monthly_cap_micros; RETURN;
        END IF;
    END IF;

    -- Metering: denied requests never reach this point, so they do not count. Only the free plan has a quota:
    -- its requests take shard 0's lock, so two replicas cannot both let request 1,000 through.
    SELECT plan INTO v_plan FROM tenants WHERE id = p_tenant_id;
    IF v_plan = 'free' THEN
        INSERT INTO tenant_monthly_usage (tenant_id, month, shard) VALUES (p_tenant_id, p_usage_month, 0) ON CONFLICT DO NOTHING;
        PERFORM 1 FROM tenant_monthly_usage WHERE tenant_id = p_tenant_id AND month = p_usage_month AND shard = 0 FOR UPDATE;
        SELECT sum(requests) INTO v_requests FROM tenant_monthly_usage WHERE tenant_id = p_tenant_id AND month = p_usage_month;
        IF v_requests >= p_free_quota THEN
            RETURN QUERY SELECT 'monthly_quota_exceeded'::TEXT, v_requests, p_free_quota; RETURN;
        END IF;
        UPDATE tenant_monthly_usage SET requests = requests + 1 WHERE tenant_id = p_tenant_id AND month = p_usage_month AND shard = 0;
    ELSE
        PERFORM kb_count_request(p_tenant_id, p_usage_month);
    END IF;

    IF p_amount > 0 THEN
        UPDATE spend_ledger SET reserved_micros = reserved_micros + p_amount
        WHERE key_id = p_key_id AND ((period = 'day' AND period_start = p_day) OR (period = 'month' AND period_start = p_month));
        INSERT INTO reservations (id, tenant_id, key_id, amount_micros, day, month, state)
        VALUES (p_reservation_id, p_tenant_id, p_key_id, p_amount, p_day, p_month, 'held');
    END IF;
    RETURN QUERY SELECT 'ok'::TEXT, v_day + p_amount, 0::BIGINT;
END;
$fn$;

-- Claims a request's idempotency records (scopes sorted by the caller) and, when it got all of them, reserves
-- its money: one round trip, one commit. 'claims_partial' (with the scopes it did get) means another request
-- holds a record: nothing was reserved and the caller looks at the record. A reserve denial gives the claims back.
CREATE FUNCTION kb_begin(
    p_tenant_id TEXT, p_owner_id TEXT, p_scopes TEXT[], p_hashes TEXT[], p_upstream_keys TEXT[], p_ttl_seconds INTEGER[],
    p_key_id TEXT, p_amount BIGINT, p_day DATE, p_month DATE, p_usage_month DATE, p_free_quota BIGINT
) RETURNS TABLE (result TEXT, used BIGINT, cap BIGINT, claimed TEXT[]) LANGUAGE plpgsql AS $fn$
DECLARE
    v_claimed TEXT[];
    r RECORD;
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

CREATE OR REPLACE FUNCTION kb_finish(
    p_audit JSONB, p_reservation_id TEXT, p_outcome TEXT, p_actual BIGINT,
    p_complete_scopes TEXT[], p_record_state TEXT, p_drop_scopes TEXT[],
    p_status INTEGER, p_headers JSONB, p_body BYTEA, p_priced_object TEXT,
    p_count_usage_month DATE
) RETURNS VOID LANGUAGE plpgsql AS $fn$
DECLARE
    v_tenant TEXT := p_audit->>'tenant_id';
    v_owner TEXT := p_audit->>'id';
BEGIN
    IF p_reservation_id IS NULL AND cardinality(p_complete_scopes) = 0 AND cardinality(p_drop_scopes) = 0 THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    -- Idempotency records first, in scope order (the order kb_begin claims them), then the ledger.
    PERFORM 1 FROM idempotency_records
    WHERE tenant_id = v_tenant AND scope = ANY(p_complete_scopes || p_drop_scopes) ORDER BY scope FOR UPDATE;
    IF p_reservation_id IS NOT NULL THEN
        PERFORM kb_settle(p_reservation_id, p_outcome, p_actual);
    END IF;
    INSERT INTO audit_events
    SELECT * FROM jsonb_populate_record(NULL::audit_events, jsonb_build_object('created_at', now()) || p_audit);
    IF cardinality(p_complete_scopes) > 0 THEN
        UPDATE idempotency_records SET state = p_record_state, response_status = p_status,
            response_headers = p_headers, response_body = p_body
        WHERE tenant_id = v_tenant AND scope = ANY(p_complete_scopes) AND owner_id = v_owner;
    END IF;
    IF cardinality(p_drop_scopes) > 0 THEN
        DELETE FROM idempotency_records WHERE tenant_id = v_tenant AND scope = ANY(p_drop_scopes) AND owner_id = v_owner;
    END IF;
    IF p_priced_object IS NOT NULL THEN
        INSERT INTO priced_objects (tenant_id, vendor, object_id, audit_id)
        VALUES (v_tenant, p_audit->>'vendor', p_priced_object, v_owner) ON CONFLICT DO NOTHING;
    END IF;
    IF p_count_usage_month IS NOT NULL THEN
        PERFORM kb_count_request(v_tenant, p_count_usage_month);
    END IF;
END;
$fn$;
