-- Reserve everything a request needs, all or nothing, in one statement: key and every ancestor still active and
-- unexpired, per-request max, daily, monthly and lifetime caps of the key and of every ancestor (a child's spend
-- counts against its whole chain), tenant monthly quota. Returns 'ok' or the denial code, with the figures the
-- error message needs; a denial caused by an ancestor is '<code>:<ancestor key id>'. Work that shares no lock comes
-- first; the chain's counter rows are locked last (root first, then down; day, month, total within a key) and held
-- only until the commit.
CREATE OR REPLACE FUNCTION kb_reserve(
    p_key_id TEXT, p_tenant_id TEXT, p_amount BIGINT, p_day DATE, p_month DATE,
    p_usage_month DATE, p_free_quota BIGINT, p_reservation_id TEXT
) RETURNS TABLE (result TEXT, used BIGINT, cap BIGINT) LANGUAGE plpgsql AS $fn$
DECLARE
    k RECORD;
    a RECORD;
    c RECORD;
    v_chain TEXT[];
    v_plan TEXT;
    v_shard SMALLINT;
    v_rows INTEGER;
    v_denial TEXT;
    v_used BIGINT;
    v_cap BIGINT;
    v_own BIGINT := 0;
BEGIN
    SELECT status, expires_at, max_request_micros, ancestor_ids INTO k
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
    IF cardinality(k.ancestor_ids) > 0 THEN
        FOR a IN SELECT id, status, expires_at, max_request_micros FROM vault_keys
                 WHERE id = ANY(k.ancestor_ids) ORDER BY array_position(k.ancestor_ids, id) LOOP
            IF a.status <> 'active' THEN
                RETURN QUERY SELECT 'vault_key_revoked:' || a.id, 0::BIGINT, 0::BIGINT; RETURN;
            END IF;
            IF a.expires_at IS NOT NULL AND a.expires_at <= now() THEN
                RETURN QUERY SELECT 'vault_key_expired:' || a.id, 0::BIGINT, 0::BIGINT; RETURN;
            END IF;
            IF a.max_request_micros IS NOT NULL AND p_amount > a.max_request_micros THEN
                RETURN QUERY SELECT 'request_cap_exceeded:' || a.id, p_amount, a.max_request_micros; RETURN;
            END IF;
        END LOOP;
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
        -- Lock the chain's day, month and total counters in the one order every writer uses, creating missing ones.
        FOR attempt IN 1..2 LOOP
            SELECT count(*) INTO v_rows
            FROM (SELECT 1 FROM spend_counters
                  WHERE key_id = ANY(v_chain) AND ((period = 'day' AND period_start = p_day)
                     OR (period = 'month' AND period_start = p_month) OR (period = 'total' AND period_start = DATE '1970-01-01'))
                  ORDER BY array_position(v_chain, key_id), period FOR UPDATE) locked;
            EXIT WHEN v_rows = 3 * cardinality(v_chain);
            INSERT INTO spend_counters (key_id, period, period_start)
            SELECT id, p.period, p.start FROM unnest(v_chain) AS id,
                (VALUES ('day', p_day), ('month', p_month), ('total', DATE '1970-01-01')) AS p(period, start)
            ON CONFLICT DO NOTHING;
        END LOOP;
        -- The first cap the amount would cross, the key's own before its ancestors'.
        FOR c IN SELECT s.key_id, s.period, s.counted_micros,
                        CASE s.period WHEN 'day' THEN v.daily_cap_micros WHEN 'month' THEN v.monthly_cap_micros
                                      ELSE v.total_cap_micros END AS cap_micros
                 FROM spend_counters s JOIN vault_keys v ON v.id = s.key_id
                 WHERE s.key_id = ANY(v_chain) AND ((s.period = 'day' AND s.period_start = p_day)
                    OR (s.period = 'month' AND s.period_start = p_month) OR (s.period = 'total' AND s.period_start = DATE '1970-01-01'))
                 ORDER BY array_position(v_chain, s.key_id) DESC, s.period LOOP
            IF c.key_id = p_key_id AND c.period = 'day' THEN v_own := c.counted_micros; END IF;
            IF c.cap_micros IS NOT NULL AND c.counted_micros + p_amount > c.cap_micros THEN
                v_denial := CASE c.period WHEN 'day' THEN 'daily_usd_cap_exceeded' WHEN 'month' THEN 'monthly_usd_cap_exceeded'
                                          ELSE 'total_usd_cap_exceeded' END
                            || CASE WHEN c.key_id = p_key_id THEN '' ELSE ':' || c.key_id END;
                v_used := c.counted_micros; v_cap := c.cap_micros;
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
        IF p_amount > 0 THEN DELETE FROM reservations WHERE id = p_reservation_id; END IF;
        IF v_shard IS NOT NULL THEN
            UPDATE tenant_monthly_usage SET requests = requests - 1 WHERE tenant_id = p_tenant_id AND month = p_usage_month AND shard = v_shard;
        END IF;
        RETURN QUERY SELECT v_denial, v_used, v_cap; RETURN;
    END IF;
    IF p_amount > 0 THEN
        UPDATE spend_counters SET counted_micros = counted_micros + p_amount
        WHERE key_id = ANY(v_chain) AND ((period = 'day' AND period_start = p_day)
           OR (period = 'month' AND period_start = p_month) OR (period = 'total' AND period_start = DATE '1970-01-01'));
    END IF;
    RETURN QUERY SELECT 'ok'::TEXT, v_own + p_amount, 0::BIGINT;
END;
$fn$;
