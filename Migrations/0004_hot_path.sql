-- Hot path (issue 6, measured with `make bench`; see README "Benchmarks"). Money semantics are unchanged; what
-- changes is which rows a request touches, and for how long it holds their locks.
--
-- * Caps are checked against one counter per key and period (`spend_counters.counted_micros` = settled + held +
--   outcome unknown). A reserve adds to it; a settle at the reserved amount (the common case) leaves it alone, so
--   the hot rows are locked once per request instead of twice. The settled / reserved / unknown breakdown is read
--   from the reservations themselves (view `spend_ledger`, same columns as the table it replaces).
-- * Request counting no longer serialises a tenant's requests on one row: tenants without a quota count into one of
--   16 shards picked at random; the free plan keeps one locked row (shard 0), which is what makes its quota exact.
-- * Per-request tables carry no foreign keys: each FK check takes a KEY SHARE lock on the tenant (or key) row, and
--   concurrent requests of one tenant turn that into a MultiXact per row. Rows are written only by the kb_*
--   functions with ids read from the key row, and tenants and keys are never deleted (revocation is a status);
--   whoever adds deletion deletes these rows too.
-- * kb_begin claims a request's idempotency records and reserves its money in one round trip; kb_finish_records
--   (which replaces kb_finish) locks idempotency records before the counters, the order kb_begin uses.

ALTER TABLE tenant_monthly_usage ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0 CHECK (shard BETWEEN 0 AND 15);
ALTER TABLE tenant_monthly_usage DROP CONSTRAINT tenant_monthly_usage_pkey;
ALTER TABLE tenant_monthly_usage ADD PRIMARY KEY (tenant_id, month, shard);

ALTER TABLE reservations DROP CONSTRAINT reservations_tenant_id_fkey, DROP CONSTRAINT reservations_key_id_fkey;
ALTER TABLE idempotency_records DROP CONSTRAINT idempotency_records_tenant_id_fkey;
ALTER TABLE priced_objects DROP CONSTRAINT priced_objects_tenant_id_fkey;

ALTER TABLE spend_ledger RENAME TO spend_counters;
ALTER TABLE spend_counters ADD COLUMN counted_micros BIGINT NOT NULL DEFAULT 0 CHECK (counted_micros >= 0);
UPDATE spend_counters SET counted_micros = settled_micros + reserved_micros + unknown_micros;
ALTER TABLE spend_counters DROP COLUMN settled_micros, DROP COLUMN reserved_micros, DROP COLUMN unknown_micros;

DROP INDEX reservations_key_state;
-- No INCLUDE of state or amounts: settling updates those, and an indexed column would make every settle a non-HOT
-- update (new entries in every index).
CREATE INDEX reservations_key_day ON reservations (key_id, day);
CREATE INDEX reservations_key_month ON reservations (key_id, month);

-- The spend breakdown per key and period, for reports; counted_micros = settled + reserved + unknown always.
CREATE VIEW spend_ledger AS
SELECT c.key_id, c.period, c.period_start, c.counted_micros,
       COALESCE(sum(r.settled_micros) FILTER (WHERE r.state = 'settled'), 0)::bigint AS settled_micros,
       COALESCE(sum(r.amount_micros) FILTER (WHERE r.state = 'held'), 0)::bigint AS reserved_micros,
       COALESCE(sum(r.amount_micros) FILTER (WHERE r.state = 'unknown'), 0)::bigint AS unknown_micros
FROM spend_counters c
LEFT JOIN reservations r ON r.key_id = c.key_id
    AND ((c.period = 'day' AND r.day = c.period_start) OR (c.period = 'month' AND r.month = c.period_start))
GROUP BY c.key_id, c.period, c.period_start, c.counted_micros;

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
        v_shard := (txid_current() % 16)::smallint;
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

-- Moves a reservation to its outcome: 'settled' (with the actual amount, which may be lower), 'released' (nothing
-- moved) or 'unknown' (kept counted until resolved). Only a reservation in 'held' or 'unknown' moves; returns the
-- state it had, or NULL if there was nothing to move. The counters change only by what stops counting: all of a
-- release, the unspent part of a lower settlement; a settlement at the reserved amount leaves them alone.
CREATE OR REPLACE FUNCTION kb_settle(p_reservation_id TEXT, p_outcome TEXT, p_actual BIGINT)
RETURNS TEXT LANGUAGE plpgsql AS $fn$
DECLARE
    r RECORD;
    v_settled BIGINT;
    v_uncounted BIGINT;
BEGIN
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id FOR UPDATE;
    IF NOT FOUND OR r.state NOT IN ('held', 'unknown') THEN RETURN NULL; END IF;
    -- Never settle more than was reserved: the cap check was made against the reservation.
    v_settled := LEAST(GREATEST(COALESCE(p_actual, r.amount_micros), 0), r.amount_micros);
    v_uncounted := CASE p_outcome WHEN 'released' THEN r.amount_micros WHEN 'settled' THEN r.amount_micros - v_settled ELSE 0 END;
    IF v_uncounted > 0 THEN
        PERFORM 1 FROM spend_counters
        WHERE key_id = r.key_id AND ((period = 'day' AND period_start = r.day) OR (period = 'month' AND period_start = r.month))
        ORDER BY period FOR UPDATE;
        UPDATE spend_counters SET counted_micros = counted_micros - v_uncounted
        WHERE key_id = r.key_id AND ((period = 'day' AND period_start = r.day) OR (period = 'month' AND period_start = r.month));
    END IF;
    UPDATE reservations SET state = p_outcome,
        settled_micros = CASE WHEN p_outcome = 'settled' THEN v_settled ELSE NULL END, updated_at = now()
    WHERE id = p_reservation_id;
    RETURN r.state;
END;
$fn$;

-- Claims a request's idempotency records: new scopes, and expired records taken over, in scope order (the order
-- kb_finish_records locks them). Returns the scopes claimed; the others are live records of other requests.
CREATE FUNCTION kb_claim(
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

-- Claims a request's idempotency records and, when it got all of them, reserves its money: one round trip, one
-- commit. 'claims_partial' (with the scopes it did get) means another request holds a record: nothing was reserved
-- and the caller looks at the record. A reserve denial gives the claims back.
CREATE FUNCTION kb_begin(
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

-- Finishes a request's money and idempotency state in its own statement's transaction: settles or releases its
-- reservation, completes or drops its idempotency records and remembers a priced object. The caller inserts the
-- audit row in the same statement (typed columns; the JSON round trip of the old kb_finish showed in profiles).
DROP FUNCTION kb_finish(JSONB, TEXT, TEXT, BIGINT, TEXT[], TEXT, TEXT[], INTEGER, JSONB, BYTEA, TEXT, DATE);
CREATE FUNCTION kb_finish_records(
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
        VALUES (p_tenant_id, p_count_usage_month, floor(random() * 16)::smallint, 1)
        ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = tenant_monthly_usage.requests + 1;
    END IF;
END;
$fn$;

-- Several requests on one key, begun in one transaction (one round trip, one commit, the key's counters locked
-- once): what a replica sends when requests for a key arrive while its previous begin is still in flight.
-- Items are processed in order, each exactly as kb_begin would; scopes are flattened with their item's index.
CREATE FUNCTION kb_begin_many(
    p_tenant_id TEXT, p_owner_ids TEXT[], p_amounts BIGINT[],
    p_scope_items INTEGER[], p_scopes TEXT[], p_hashes TEXT[], p_upstream_keys TEXT[], p_ttl_seconds INTEGER[],
    p_key_id TEXT, p_day DATE, p_month DATE, p_usage_month DATE, p_free_quota BIGINT
) RETURNS TABLE (item INTEGER, result TEXT, used BIGINT, cap BIGINT, claimed TEXT[]) LANGUAGE plpgsql AS $fn$
DECLARE
    r RECORD;
BEGIN
    FOR i IN 1..cardinality(p_owner_ids) LOOP
        SELECT * INTO r FROM kb_begin(
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
