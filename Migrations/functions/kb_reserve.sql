-- Reserve everything a request needs, all or nothing, in one statement: key and every ancestor still active and
-- unexpired, per-request max, daily, monthly and lifetime caps of the key and of every ancestor (a child's spend
-- counts against its whole chain), tenant monthly quota. Returns 'ok' or the denial code, with the figures the
-- error message needs; a denial caused by an ancestor is '<code>:<ancestor key id>'. Work that shares no lock comes
-- first; the chain's counter rows are locked last (root first, then down; day, month, total within a key) and held
-- only until the commit.
-- Budget alerts (DESIGN §14) are decided here, under those locks, from the values the counters held when locked:
-- a threshold crossed by this request, or the first refusal at a cap in its period, writes its event into the
-- outbox in this statement (kb_alert_spend, kb_alert_cap). A request that crosses nothing pays three integer
-- comparisons per key of the chain, no row and no round trip.
CREATE OR REPLACE FUNCTION kb_reserve(
    p_key_id TEXT, p_tenant_id TEXT, p_amount BIGINT, p_day DATE, p_month DATE,
    p_usage_month DATE, p_free_quota BIGINT, p_reservation_id TEXT
) RETURNS TABLE (result TEXT, used BIGINT, cap BIGINT) LANGUAGE plpgsql AS $fn$
DECLARE
    k RECORD;
    a RECORD;
    v_chain TEXT[];
    v_n INTEGER;
    -- Per key of the chain (root first): its caps, and what its counters held when locked.
    v_daily_cap BIGINT[];
    v_monthly_cap BIGINT[];
    v_total_cap BIGINT[];
    v_day BIGINT[];
    v_month BIGINT[];
    v_total BIGINT[];
    -- Per key of the chain: the periods whose cap already announced `key.cap.reached` ('day,month', …).
    v_reached TEXT[];
    v_hit TEXT;
    v_rows INTEGER;
    d BIGINT;
    m BIGINT;
    t BIGINT;
    v_plan TEXT;
    v_shard SMALLINT;
    v_denial TEXT;
    v_used BIGINT;
    v_cap BIGINT;
    v_period TEXT;
    v_denied_at INTEGER;
BEGIN
    SELECT status, expires_at, max_request_micros, daily_cap_micros, monthly_cap_micros, total_cap_micros, ancestor_ids INTO k
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
    v_chain := k.ancestor_ids || p_key_id;
    v_n := cardinality(v_chain);
    v_daily_cap := array_fill(NULL::BIGINT, ARRAY[v_n]);
    v_monthly_cap := v_daily_cap;
    v_total_cap := v_daily_cap;
    v_daily_cap[v_n] := k.daily_cap_micros;
    v_monthly_cap[v_n] := k.monthly_cap_micros;
    v_total_cap[v_n] := k.total_cap_micros;
    IF v_n > 1 THEN
        FOR a IN SELECT id, status, expires_at, max_request_micros, daily_cap_micros, monthly_cap_micros, total_cap_micros,
                        array_position(v_chain, id) AS pos
                 FROM vault_keys WHERE id = ANY(k.ancestor_ids) ORDER BY array_position(v_chain, id) LOOP
            IF a.status <> 'active' THEN
                RETURN QUERY SELECT 'vault_key_revoked:' || a.id, 0::BIGINT, 0::BIGINT; RETURN;
            END IF;
            IF a.expires_at IS NOT NULL AND a.expires_at <= now() THEN
                RETURN QUERY SELECT 'vault_key_expired:' || a.id, 0::BIGINT, 0::BIGINT; RETURN;
            END IF;
            IF a.max_request_micros IS NOT NULL AND p_amount > a.max_request_micros THEN
                RETURN QUERY SELECT 'request_cap_exceeded:' || a.id, p_amount, a.max_request_micros; RETURN;
            END IF;
            v_daily_cap[a.pos] := a.daily_cap_micros;
            v_monthly_cap[a.pos] := a.monthly_cap_micros;
            v_total_cap[a.pos] := a.total_cap_micros;
        END LOOP;
    END IF;

    SELECT plan INTO v_plan FROM tenants WHERE id = p_tenant_id;
    IF v_plan <> 'free' THEN
        -- No quota: count into one of 16 shards (taken back below if the request is refused). The shard is the
        -- transaction's, not random per call: kb_claim_and_reserve_many reserves several requests in one
        -- transaction, and a second shard locked after the counters could deadlock with another transaction's
        -- shard-then-counters.
        v_shard := kb_usage_shard(true);
        INSERT INTO tenant_monthly_usage (tenant_id, month, shard, requests) VALUES (p_tenant_id, p_usage_month, v_shard, 1)
        ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = tenant_monthly_usage.requests + 1;
    END IF;

    IF p_amount > 0 THEN
        INSERT INTO reservations (id, tenant_id, key_id, amount_micros, day, month, state)
        VALUES (p_reservation_id, p_tenant_id, p_key_id, p_amount, p_day, p_month, 'held');
        -- Lock each key's day, month and total counters, root first (the order every writer uses), creating
        -- missing ones.
        v_day := array_fill(0::BIGINT, ARRAY[v_n]);
        v_month := v_day;
        v_total := v_day;
        v_reached := array_fill(NULL::TEXT, ARRAY[v_n]);
        FOR i IN 1..v_n LOOP
            FOR attempt IN 1..2 LOOP
                SELECT count(*), COALESCE(max(counted_micros) FILTER (WHERE period = 'day'), 0),
                       COALESCE(max(counted_micros) FILTER (WHERE period = 'month'), 0),
                       COALESCE(max(counted_micros) FILTER (WHERE period = 'total'), 0),
                       string_agg(period, ',') FILTER (WHERE cap_reached)
                INTO v_rows, d, m, t, v_hit
                FROM (SELECT period, counted_micros, cap_reached FROM spend_counters
                      WHERE key_id = v_chain[i] AND ((period = 'day' AND period_start = p_day)
                         OR (period = 'month' AND period_start = p_month) OR (period = 'total' AND period_start = DATE '1970-01-01'))
                      ORDER BY period FOR UPDATE) locked;
                EXIT WHEN v_rows = 3;
                INSERT INTO spend_counters (key_id, period, period_start)
                VALUES (v_chain[i], 'day', p_day), (v_chain[i], 'month', p_month), (v_chain[i], 'total', DATE '1970-01-01')
                ON CONFLICT DO NOTHING;
            END LOOP;
            v_day[i] := d; v_month[i] := m; v_total[i] := t; v_reached[i] := v_hit;
        END LOOP;
        -- The first cap the amount would cross: the key's own before its ancestors', day before month before total.
        FOR i IN REVERSE v_n..1 LOOP
            IF v_daily_cap[i] IS NOT NULL AND v_day[i] + p_amount > v_daily_cap[i] THEN
                v_denial := 'daily_usd_cap_exceeded'; v_used := v_day[i]; v_cap := v_daily_cap[i]; v_period := 'day';
            ELSIF v_monthly_cap[i] IS NOT NULL AND v_month[i] + p_amount > v_monthly_cap[i] THEN
                v_denial := 'monthly_usd_cap_exceeded'; v_used := v_month[i]; v_cap := v_monthly_cap[i]; v_period := 'month';
            ELSIF v_total_cap[i] IS NOT NULL AND v_total[i] + p_amount > v_total_cap[i] THEN
                v_denial := 'total_usd_cap_exceeded'; v_used := v_total[i]; v_cap := v_total_cap[i]; v_period := 'total';
            END IF;
            IF v_denial IS NOT NULL THEN
                v_denied_at := i;
                IF i < v_n THEN v_denial := v_denial || ':' || v_chain[i]; END IF;
                EXIT;
            END IF;
        END LOOP;
    END IF;

    -- The free plan's quota: its requests take shard 0's lock, so two replicas cannot both let request 1,000 through.
    -- Denied requests do not count.
    IF v_denial IS NULL AND v_plan = 'free' THEN
        INSERT INTO tenant_monthly_usage (tenant_id, month, shard) VALUES (p_tenant_id, p_usage_month, 0) ON CONFLICT DO NOTHING;
        PERFORM 1 FROM tenant_monthly_usage WHERE tenant_id = p_tenant_id AND month = p_usage_month AND shard = 0 FOR UPDATE;
        SELECT sum(requests) INTO v_used FROM tenant_monthly_usage WHERE tenant_id = p_tenant_id AND month = p_usage_month;
        IF v_used >= p_free_quota THEN
            v_denial := 'monthly_quota_exceeded'; v_cap := p_free_quota;
        ELSE
            UPDATE tenant_monthly_usage SET requests = requests + 1 WHERE tenant_id = p_tenant_id AND month = p_usage_month AND shard = 0;
        END IF;
    END IF;

    IF v_denial IS NOT NULL THEN
        -- Only the first refusal at a cap in its period announces it; the mark was read with the locked counters, so
        -- the refusals after it pay nothing more.
        IF v_denied_at IS NOT NULL AND position(v_period IN COALESCE(v_reached[v_denied_at], '')) = 0 THEN
            PERFORM kb_alert_cap(p_tenant_id, v_chain[v_denied_at], v_period,
                CASE v_period WHEN 'day' THEN p_day WHEN 'month' THEN p_month ELSE DATE '1970-01-01' END, v_used, v_cap, p_amount);
        END IF;
        IF p_amount > 0 THEN DELETE FROM reservations WHERE id = p_reservation_id; END IF;
        IF v_shard IS NOT NULL THEN
            UPDATE tenant_monthly_usage SET requests = requests - 1 WHERE tenant_id = p_tenant_id AND month = p_usage_month AND shard = v_shard;
        END IF;
        RETURN QUERY SELECT v_denial, v_used, v_cap; RETURN;
    END IF;
    IF p_amount > 0 THEN
        FOR i IN 1..v_n LOOP
            UPDATE spend_counters SET counted_micros = counted_micros + p_amount
            WHERE key_id = v_chain[i] AND ((period = 'day' AND period_start = p_day)
               OR (period = 'month' AND period_start = p_month) OR (period = 'total' AND period_start = DATE '1970-01-01'));
            -- A threshold can only have been crossed where the counter's whole percent moved.
            IF v_daily_cap[i] IS NOT NULL AND (v_day[i] + p_amount) * 100 / v_daily_cap[i] > v_day[i] * 100 / v_daily_cap[i] THEN
                PERFORM kb_alert_spend(p_tenant_id, v_chain[i], 'day', p_day, v_day[i], v_day[i] + p_amount, v_daily_cap[i]);
            END IF;
            IF v_monthly_cap[i] IS NOT NULL AND (v_month[i] + p_amount) * 100 / v_monthly_cap[i] > v_month[i] * 100 / v_monthly_cap[i] THEN
                PERFORM kb_alert_spend(p_tenant_id, v_chain[i], 'month', p_month, v_month[i], v_month[i] + p_amount, v_monthly_cap[i]);
            END IF;
            IF v_total_cap[i] IS NOT NULL AND (v_total[i] + p_amount) * 100 / v_total_cap[i] > v_total[i] * 100 / v_total_cap[i] THEN
                PERFORM kb_alert_spend(p_tenant_id, v_chain[i], 'total', DATE '1970-01-01', v_total[i], v_total[i] + p_amount, v_total_cap[i]);
            END IF;
        END LOOP;
    END IF;
    RETURN QUERY SELECT 'ok'::TEXT, COALESCE(v_day[v_n], 0) + p_amount, 0::BIGINT;
END;
$fn$;
