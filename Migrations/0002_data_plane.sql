-- Data plane: spend ledger, reservations, idempotency / duplicate-guard records, audit trail.
-- All money is integer micro-USD. The two functions below are the only writers of money state:
-- each runs as one statement, so row locks are held for one round trip, never across an upstream call.

-- One row per key per period: the day and the month in the key's own time zone.
CREATE TABLE spend_ledger (
    key_id          TEXT NOT NULL REFERENCES vault_keys(id) ON DELETE CASCADE,
    period          TEXT NOT NULL CHECK (period IN ('day', 'month')),
    period_start    DATE NOT NULL,
    settled_micros  BIGINT NOT NULL DEFAULT 0 CHECK (settled_micros >= 0),
    reserved_micros BIGINT NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),   -- in flight
    unknown_micros  BIGINT NOT NULL DEFAULT 0 CHECK (unknown_micros >= 0),    -- outcome unknown: counted as spent
    PRIMARY KEY (key_id, period, period_start)
);

-- Each priced request's hold on the ledger, until settled, released or left unknown.
CREATE TABLE reservations (
    id              TEXT PRIMARY KEY,                -- the request's audit id
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key_id          TEXT NOT NULL REFERENCES vault_keys(id) ON DELETE CASCADE,
    amount_micros   BIGINT NOT NULL CHECK (amount_micros > 0),
    day             DATE NOT NULL,
    month           DATE NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('held', 'unknown', 'settled', 'released')),
    settled_micros  BIGINT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reservations_key_state ON reservations (key_id, state);

-- Idempotency-Key records (scope 'idem:…') and duplicate-guard fingerprints (scope 'dup:…').
CREATE TABLE idempotency_records (
    tenant_id         TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    scope             TEXT NOT NULL,
    request_hash      TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('in_flight', 'completed', 'unknown')),
    owner_id          TEXT NOT NULL,                 -- audit id of the request that produced (or is producing) it
    reservation_id    TEXT,
    upstream_key      TEXT,                          -- Idempotency-Key sent upstream, reused by a retry
    response_status   INTEGER,
    response_headers  JSONB,
    response_body     BYTEA,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, scope)
);
CREATE INDEX idempotency_records_expires ON idempotency_records (expires_at);

-- Objects whose money was already counted when Keybrake created them (a PaymentIntent created
-- through the proxy is priced at create; confirming it later must not count it twice).
CREATE TABLE priced_objects (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    vendor      TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    audit_id    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor, object_id)
);

-- Append-only: one row per proxied request, allowed, denied or replayed, plus one per resolution of an
-- unknown outcome. Never secrets or bodies. Partitioned by month so old months are dropped, not deleted.
CREATE TABLE audit_events (
    id                   TEXT NOT NULL,               -- aud_…
    tenant_id            TEXT NOT NULL,
    key_id               TEXT,
    key_label            TEXT,
    vendor               TEXT NOT NULL,
    method               TEXT NOT NULL,
    path                 TEXT NOT NULL,               -- normalized
    operation            TEXT,                        -- e.g. charges.create
    decision             TEXT NOT NULL CHECK (decision IN ('allowed', 'denied', 'replayed', 'resolved')),
    error_code           TEXT,
    upstream_status      INTEGER,
    amount_minor         BIGINT,
    currency             TEXT,
    amount_micros        BIGINT NOT NULL DEFAULT 0,   -- reserved / settled amount of this request
    idempotency_key      TEXT,
    idempotency_auto     BOOLEAN NOT NULL DEFAULT false,
    upstream_request_id  TEXT,
    run_id               TEXT,
    outcome              TEXT CHECK (outcome IN ('settled', 'released', 'outcome_unknown')),
    duplicate_of         TEXT,                        -- a replay: the request whose response it repeats
    resolves             TEXT,                        -- settles an earlier outcome_unknown request (retry or tenant)
    overhead_us          BIGINT,
    upstream_us          BIGINT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;
-- Newest-first keyset pagination per tenant, and the common filters.
CREATE INDEX audit_events_tenant_created ON audit_events (tenant_id, created_at DESC, id DESC);
CREATE INDEX audit_events_tenant_key_created ON audit_events (tenant_id, key_id, created_at DESC, id DESC);
CREATE INDEX audit_events_tenant_idempotency ON audit_events (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX audit_events_tenant_run ON audit_events (tenant_id, run_id) WHERE run_id IS NOT NULL;
CREATE INDEX audit_events_resolves ON audit_events (resolves) WHERE resolves IS NOT NULL;

-- Monthly partitions from `p_from`'s month through `p_months` months ahead (idempotent).
-- Called at start-up and by `keybrake audit prune`; rows outside any month land in the default partition.
CREATE FUNCTION kb_ensure_audit_partitions(p_from DATE, p_months INTEGER) RETURNS INTEGER LANGUAGE plpgsql AS $fn$
DECLARE
    m DATE := date_trunc('month', p_from)::date;
    created INTEGER := 0;
    name TEXT;
BEGIN
    FOR i IN 0..p_months LOOP
        name := format('audit_events_%s', to_char(m, 'YYYY_MM'));
        IF to_regclass(name) IS NULL THEN
            -- Move any rows of that month out of the default partition first (attach would fail otherwise).
            EXECUTE format('CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
            EXECUTE format('INSERT INTO %I SELECT * FROM audit_events_default WHERE created_at >= %L AND created_at < %L',
                           name, m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            EXECUTE format('DELETE FROM audit_events_default WHERE created_at >= %L AND created_at < %L',
                           m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           name, m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN created;
END;
$fn$;
SELECT kb_ensure_audit_partitions((now() AT TIME ZONE 'UTC')::date, 2);

-- Reserve everything a request needs, all or nothing, in one statement:
-- key still active and unexpired, per-request max, daily and monthly caps, tenant monthly quota.
-- Returns 'ok' or the denial code, with the figures the error message needs.
CREATE FUNCTION kb_reserve(
    p_key_id TEXT, p_tenant_id TEXT, p_amount BIGINT, p_day DATE, p_month DATE,
    p_usage_month DATE, p_free_quota BIGINT, p_reservation_id TEXT
) RETURNS TABLE (result TEXT, used BIGINT, cap BIGINT) LANGUAGE plpgsql AS $fn$
DECLARE
    k RECORD;
    p_quota BIGINT;
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
        -- Lock the key's day and month rows (always in this order) and check both caps.
        INSERT INTO spend_ledger (key_id, period, period_start)
        VALUES (p_key_id, 'day', p_day), (p_key_id, 'month', p_month)
        ON CONFLICT DO NOTHING;
        SELECT settled_micros + reserved_micros + unknown_micros INTO v_day FROM spend_ledger
        WHERE key_id = p_key_id AND period = 'day' AND period_start = p_day FOR UPDATE;
        SELECT settled_micros + reserved_micros + unknown_micros INTO v_month FROM spend_ledger
        WHERE key_id = p_key_id AND period = 'month' AND period_start = p_month FOR UPDATE;
        IF k.daily_cap_micros IS NOT NULL AND v_day + p_amount > k.daily_cap_micros THEN
            RETURN QUERY SELECT 'daily_usd_cap_exceeded'::TEXT, v_day, k.daily_cap_micros; RETURN;
        END IF;
        IF k.monthly_cap_micros IS NOT NULL AND v_month + p_amount > k.monthly_cap_micros THEN
            RETURN QUERY SELECT 'monthly_usd_cap_exceeded'::TEXT, v_month, k.monthly_cap_micros; RETURN;
        END IF;
    END IF;

    -- Metering: denied requests never reach this point, so they do not count. Only the free plan has a quota.
    SELECT CASE WHEN plan = 'free' THEN p_free_quota END INTO p_quota FROM tenants WHERE id = p_tenant_id;
    INSERT INTO tenant_monthly_usage (tenant_id, month) VALUES (p_tenant_id, p_usage_month) ON CONFLICT DO NOTHING;
    SELECT requests INTO v_requests FROM tenant_monthly_usage
    WHERE tenant_id = p_tenant_id AND month = p_usage_month FOR UPDATE;
    IF p_quota IS NOT NULL AND v_requests >= p_quota THEN
        RETURN QUERY SELECT 'monthly_quota_exceeded'::TEXT, v_requests, p_quota; RETURN;
    END IF;
    UPDATE tenant_monthly_usage SET requests = requests + 1 WHERE tenant_id = p_tenant_id AND month = p_usage_month;

    IF p_amount > 0 THEN
        UPDATE spend_ledger SET reserved_micros = reserved_micros + p_amount
        WHERE key_id = p_key_id AND ((period = 'day' AND period_start = p_day) OR (period = 'month' AND period_start = p_month));
        INSERT INTO reservations (id, tenant_id, key_id, amount_micros, day, month, state)
        VALUES (p_reservation_id, p_tenant_id, p_key_id, p_amount, p_day, p_month, 'held');
    END IF;
    RETURN QUERY SELECT 'ok'::TEXT, v_day + p_amount, 0::BIGINT;
END;
$fn$;

-- Moves a reservation to its outcome: 'settled' (with the actual amount, which may be lower),
-- 'released' (nothing moved) or 'unknown' (kept counted until resolved). Only a reservation in
-- 'held' or 'unknown' moves; returns the state it had, or NULL if there was nothing to move.
CREATE FUNCTION kb_settle(p_reservation_id TEXT, p_outcome TEXT, p_actual BIGINT)
RETURNS TEXT LANGUAGE plpgsql AS $fn$
DECLARE
    r RECORD;
    v_settled BIGINT;
BEGIN
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id FOR UPDATE;
    IF NOT FOUND OR r.state NOT IN ('held', 'unknown') THEN RETURN NULL; END IF;
    -- Lock the ledger rows day before month, the order kb_reserve uses, so the two never deadlock.
    PERFORM 1 FROM spend_ledger
    WHERE key_id = r.key_id AND ((period = 'day' AND period_start = r.day) OR (period = 'month' AND period_start = r.month))
    ORDER BY period FOR UPDATE;
    -- Never settle more than was reserved: the cap check was made against the reservation.
    v_settled := LEAST(GREATEST(COALESCE(p_actual, r.amount_micros), 0), r.amount_micros);
    UPDATE spend_ledger SET
        reserved_micros = reserved_micros - CASE WHEN r.state = 'held' THEN r.amount_micros ELSE 0 END,
        unknown_micros  = unknown_micros  - CASE WHEN r.state = 'unknown' THEN r.amount_micros ELSE 0 END
                                          + CASE WHEN p_outcome = 'unknown' THEN r.amount_micros ELSE 0 END,
        settled_micros  = settled_micros  + CASE WHEN p_outcome = 'settled' THEN v_settled ELSE 0 END
    WHERE key_id = r.key_id AND ((period = 'day' AND period_start = r.day) OR (period = 'month' AND period_start = r.month));
    UPDATE reservations SET state = p_outcome,
        settled_micros = CASE WHEN p_outcome = 'settled' THEN v_settled ELSE NULL END, updated_at = now()
    WHERE id = p_reservation_id;
    RETURN r.state;
END;
$fn$;

-- Finishes a request in one statement (one transaction): settles or releases its reservation,
-- writes its audit row, completes or drops its idempotency records and remembers a priced object.
-- Rows that move no money are committed without waiting for fsync (DESIGN §12).
CREATE FUNCTION kb_finish(
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
    IF p_reservation_id IS NOT NULL THEN
        PERFORM kb_settle(p_reservation_id, p_outcome, p_actual);
    END IF;
    INSERT INTO audit_events
    SELECT * FROM jsonb_populate_record(NULL::audit_events, jsonb_build_object('created_at', now()) || p_audit);
    -- Lock this request's records in scope order, the same order a claim inserts them, so a concurrent
    -- claim of the same scopes waits instead of deadlocking.
    PERFORM 1 FROM idempotency_records
    WHERE tenant_id = v_tenant AND scope = ANY(p_complete_scopes || p_drop_scopes) ORDER BY scope FOR UPDATE;
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
    -- A request with no quota to check (a pro tenant's unpriced call) is counted here, one round trip saved.
    IF p_count_usage_month IS NOT NULL THEN
        INSERT INTO tenant_monthly_usage (tenant_id, month, requests) VALUES (v_tenant, p_count_usage_month, 1)
        ON CONFLICT (tenant_id, month) DO UPDATE SET requests = tenant_monthly_usage.requests + 1;
    END IF;
END;
$fn$;

-- The tenant declares what happened to a request whose outcome was unknown: 'settled' (with the amount that
-- moved, at most what was reserved) or 'released'. Moves the reservation once and appends the resolution event.
CREATE FUNCTION kb_resolve(p_tenant_id TEXT, p_audit_id TEXT, p_outcome TEXT, p_amount BIGINT, p_event JSONB)
RETURNS TABLE (result TEXT, reserved BIGINT) LANGUAGE plpgsql AS $fn$
DECLARE
    r RECORD;
BEGIN
    SELECT * INTO r FROM reservations WHERE id = p_audit_id AND tenant_id = p_tenant_id FOR UPDATE;
    IF NOT FOUND THEN RETURN QUERY SELECT 'no_reservation'::TEXT, 0::BIGINT; RETURN; END IF;
    IF r.state <> 'unknown' THEN RETURN QUERY SELECT ('already_' || r.state)::TEXT, r.amount_micros; RETURN; END IF;
    IF p_outcome = 'settled' AND (p_amount IS NULL OR p_amount > r.amount_micros) THEN
        RETURN QUERY SELECT 'amount_too_large'::TEXT, r.amount_micros; RETURN;
    END IF;
    PERFORM kb_settle(p_audit_id, p_outcome, p_amount);
    INSERT INTO audit_events
    SELECT * FROM jsonb_populate_record(NULL::audit_events, jsonb_build_object('created_at', now()) || p_event);
    -- Released: nothing was sent, so an identical retry may go through now.
    IF p_outcome = 'released' THEN
        DELETE FROM idempotency_records WHERE tenant_id = p_tenant_id AND owner_id = p_audit_id AND state = 'unknown';
    END IF;
    RETURN QUERY SELECT 'ok'::TEXT, r.amount_micros;
END;
$fn$;
