-- Budget alerts as signed webhooks (DESIGN §14, issue 21): per-tenant webhook endpoints, an outbox of events, and
-- one delivery row per endpoint and event.
--
-- * Events are written in the statement that causes them: kb_reserve / kb_settle insert `key.spend.threshold_crossed`,
--   `key.cap.reached` and `request.outcome_unknown` in the same transaction that moves the counter or denies (see
--   Migrations/functions/kb_alert_*.sql); a trigger on vault_keys writes `key.revoked`; the delivery service's sweep
--   writes `key.expiring`. `dedupe_key` (unique) is what makes each of them happen once: for a crossing it is
--   (key, cap field, period, threshold), so two replicas racing across the same threshold insert one row.
-- * Fan-out: an insert into `events` makes a pending delivery for every enabled endpoint of the tenant that
--   subscribes to the type (trigger kb_event_fan_out), in the same transaction.
-- * A delivery is claimed by pushing `next_attempt_at` past the attempt's timeout (FOR UPDATE SKIP LOCKED, then
--   commit): no lock is held while the receiver is called, and a replica killed mid-attempt leaves a row that is due
--   again when that lease runs out, for any replica to take.

-- Per key: the spend thresholds (percent of each cap) that fire `key.spend.threshold_crossed`. NULL = inherited
-- from the parent key (a root key's NULL is the default 50 / 80 / 100).
ALTER TABLE vault_keys ADD COLUMN alert_thresholds SMALLINT[]
    CHECK (alert_thresholds IS NULL OR (cardinality(alert_thresholds) BETWEEN 1 AND 10
           AND 1 <= ALL (alert_thresholds) AND 100 >= ALL (alert_thresholds)));

CREATE TABLE webhook_endpoints (
    id                        TEXT PRIMARY KEY,                 -- whe_<base62>
    tenant_id                 TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url                       TEXT NOT NULL,
    description               TEXT,
    events                    TEXT[] NOT NULL DEFAULT '{}',     -- empty: every event type
    format                    TEXT NOT NULL DEFAULT 'standard' CHECK (format IN ('standard', 'slack')),
    enabled                   BOOLEAN NOT NULL DEFAULT true,
    disabled_reason           TEXT,
    -- The signing secret `whsec_…`, AES-256-GCM sealed like vendor credentials (AAD: tenant + endpoint id).
    master_key_id             TEXT NOT NULL,
    secret_sealed             BYTEA NOT NULL,
    -- After a rotation the previous secret signs too, until `previous_expires_at` (24 h).
    previous_master_key_id    TEXT,
    previous_secret_sealed    BYTEA,
    previous_expires_at       TIMESTAMPTZ,
    -- First failed attempt since the last success; an endpoint failing for 5 days is disabled.
    failing_since             TIMESTAMPTZ,
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant_created ON webhook_endpoints (tenant_id, created_at DESC, id DESC);

-- The outbox. `data` is the event's `data` object; the delivered body is {id, type, created_at, data}.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,                              -- evt_<hex>
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    type         TEXT NOT NULL,
    key_id       TEXT,
    period       TEXT,                                          -- 2026-12-06 / 2026-12 / total, for spend events
    dedupe_key   TEXT UNIQUE,                                   -- NULL: not deduplicated (ping)
    data         JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX events_tenant_created ON events (tenant_id, created_at DESC, id DESC);
CREATE INDEX events_tenant_key_created ON events (tenant_id, key_id, created_at DESC, id DESC) WHERE key_id IS NOT NULL;
CREATE INDEX events_created ON events (created_at);

CREATE TABLE webhook_deliveries (
    id                TEXT PRIMARY KEY,                         -- whd_<hex>
    tenant_id         TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    endpoint_id       TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id          TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    status            TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TIMESTAMPTZ,                              -- pending: when it is due (or its claim runs out)
    last_attempt_at   TIMESTAMPTZ,
    last_status       INTEGER,                                  -- the receiver's HTTP status; NULL: no answer
    last_error        TEXT,                                     -- why an attempt failed, without secrets
    last_latency_ms   INTEGER,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_created ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

-- The key.expiring sweep reads keys that expire within a day.
CREATE INDEX vault_keys_active_expiry ON vault_keys (expires_at) WHERE status = 'active' AND expires_at IS NOT NULL;

-- Trigger functions: their current bodies live in Migrations/functions/ (applied after this file); these stubs only
-- let the triggers be created here.
CREATE OR REPLACE FUNCTION kb_event_fan_out() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN RETURN NULL; END; $fn$;
CREATE OR REPLACE FUNCTION kb_alert_key_revoked() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN RETURN NULL; END; $fn$;
CREATE TRIGGER events_fan_out AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION kb_event_fan_out();
CREATE TRIGGER vault_keys_revoked AFTER UPDATE OF status ON vault_keys FOR EACH ROW
    WHEN (OLD.status = 'active' AND NEW.status = 'revoked') EXECUTE FUNCTION kb_alert_key_revoked();
