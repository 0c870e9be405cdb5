-- Reserve everything a request needs, all or nothing, in one statement: key still active and unexpired,
-- per-request max, daily and monthly caps, tenant monthly quota. Returns 'ok' or the denial code, with the
-- figures the error message needs. Work that shares no lock comes first; the key's counter rows are locked last
-- and held only until the commit.
CREATE OR REPLACE FUNCTION kb_reserve(
    p_key_id TEXT, p_tenant_id TEXT, p_amount BIGINT, p_day DATE, p_month DATE,
    p_usage_month DATE, p_free_quota BIGINT, p_reservation_id TEXT
) RETURNS TABLE (result TEXT, used BIGINT, cap BIGINT) LANGUAGE plpgsql AS $fn$
DECLARE
    k RECORD;
    v_plan TEXT;
    v_shard SMALLINT;
    v_rows INTEGER;
    v_day BIGINT := 0;
    v_month BIGINT := 0;
    v_requests BIGINT;
    v_denial TEXT;
    v_used BIGINT;
    v_cap BIGINT;
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

    SELECT plan INTO v_plan FROM tenants WHERE id = p_tenant_id;
    IF v_plan <> 'free' THEN
        -- No quota: count into one of 16 shards (taken back below if the request is refused). The shard is the
        -- transaction's, not random per call: kb_begin_many reserves several requests in one transaction, and a
        -- second shard locked after the counters could deadlock with another transaction's shard-then-counters.
        v_shard := kb_usage_shard(true);
        INSERT INTO tenant_monthly_usage (tenant_id, month, shard, requests) VALUES (p_tenant_id, p_usage_month, v_shard, 1)
        ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = tenant_monthly_usage.requests + 1;
    END IF;

    IF p_amount > 0 THEN
        INSERT INTO reservations (id, tenant_id, key_id, amount_micros, day, month, state)
        VALUES (p_reservation_id, p_tenant_id, p_key_id, p_amount, p_day, p_month, 'held');
        -- Lock the key's day and month counters (day first: every writer uses this order) and check both caps.
        FOR attempt IN 1..2 LOOP
            SELECT count(*), COALESCE(max(counted_micros) FILTER (WHERE period = 'day'), 0),
                   COALESCE(max(counted_micros) FILTER (WHERE period = 'month'), 0)
            INTO v_rows, v_day, v_month
            FROM (SELECT period, counted_micros FROM spend_counters
                  WHERE key_id = p_key_id AND ((period = 'day' AND period_start = p_day) OR (period = 'month' AND period_start = p_month))
                  ORDER BY period FOR UPDATE) locked;
            EXIT WHEN v_rows = 2;
            INSERT INTO spend_counters (key_id, period, period_start)
            VALUES (p_key_id, 'day', p_day), (p_key_id, 'month', p_month)
            ON CONFLICT DO NOTHING;
        END LOOP;
        IF k.daily_cap_micros IS NOT NULL AND v_day + p_amount > k.daily_cap_micros THEN
            v_denial := 'daily_usd_cap_exceeded'; v_used := v_day; v_cap := k.daily_cap_micros;
        ELSIF k.monthly_cap_micros IS NOT NULL AND v_month + p_amount > k.monthly_cap_micros THEN
            v_denial := 'monthly_usd_cap_exceeded'; v_used := v_month; v_cap := k.monthly_cap_micros;
        END IF;
    END IF;

    -- The free plan's quota: its requests take shard 0's lock, so two replicas cannot both let request 1,000 through.
    -- Denied requests do not count.
    IF v_denial IS NULL AND v_plan = 'free' THEN
        INSERT INTO tenant_monthly_usage (tenant_id, month, shard) VALUES (p_tenant_id, p_usage_month, 0) ON CONFLICT DO NOTHING;
        PERFORM 1 FROM tenant_monthly_usage WHERE tenant_id = p_tenant_id AND month = p_usage_month AND shard = 0 FOR UPDATE;
        SELECT sum(requests) INTO v_requests FROM tenant_monthly_usage WHERE tenant_id = p_tenant_id AND month = p_usage_month;
        IF v_requests >= p_free_quota THEN
            v_denial := 'monthly_quota_exceeded'; v_used := v_requests; v_cap := p_free_quota;
        ELSE
            UPDATE tenant_monthly_usage SET requests = requests + 1 WHERE tenant_id = p_tenant_id AND month = p_usage_month AND shard = 0;
        END IF;
    END IF;

    IF v_denial IS NOT NULL THEN
        IF p_amount > 0 THEN DELETE FROM reservations WHERE id = p_reservation_id; END IF;
        IF v_shard IS NOT NULL THEN
            UPDATE tenant_monthly_usage SET requests = requests - 1 WHERE tenant_id = p_tenant_id AND month = p_usage_month AND shard = v_shard;
        END IF;
        RETURN QUERY SELECT v_denial, v_used, v_cap; RETURN;
    END IF;
    IF p_amount > 0 THEN
        UPDATE spend_counters SET counted_micros = counted_micros + p_amount
        WHERE key_id = p_key_id AND ((period = 'day' AND period_start = p_day) OR (period = 'month' AND period_start = p_month));
    END IF;
    RETURN QUERY SELECT 'ok'::TEXT, v_day + p_amount, 0::BIGINT;
END;
$fn$;
