-- Budget alerts as signed webhooks from an outbox (DESIGN §14, issue 21).
--
-- * `webhook_events`: the outbox. A row is written by the statement that makes it true — kb_reserve / kb_settle
--   when a counter crosses a threshold or a cap refuses, kb_settle when an outcome becomes unknown, the revoke
--   statement — so there is no event without its cause and no cause without its event.
-- * `spend_counters.alerted_percents` / `cap_reached`: what was already announced for that key, period and cap,
--   written under the counter row's own lock, so one threshold fires once per period whatever the concurrency and
--   however often the counter goes down (a release) and up again. NULL until the first alert: the columns cost
--   nothing on the rows and updates of keys that never alert.
-- * `webhook_deliveries`: one row per (event, endpoint), due at `next_attempt_at`; every replica takes due rows
--   with FOR UPDATE SKIP LOCKED and leases them while it posts. `webhook_attempts`: each attempt, for the API.

ALTER TABLE vault_keys ADD COLUMN alert_thresholds SMALLINT[]
    CHECK (alert_thresholds IS NULL OR (cardinality(alert_thresholds) <= 10 AND 1 <= ALL (alert_thresholds) AND 100 >= ALL (alert_thresholds)));
ALTER TABLE spend_counters ADD COLUMN alerted_percents SMALLINT[], ADD COLUMN cap_reached BOOLEAN;

CREATE TABLE webhook_endpoints (
    id                      TEXT PRIMARY KEY,                  -- whe_<public id>
    tenant_id               TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url                     TEXT NOT NULL,
    events                  TEXT[],                            -- NULL: every event type
    description             TEXT NOT NULL DEFAULT '',
    enabled                 BOOLEAN NOT NULL DEFAULT true,
    format                  TEXT NOT NULL DEFAULT 'standard' CHECK (format IN ('standard', 'slack')),
    -- The signing secret, sealed like vendor credentials (AES-256-GCM, AAD = tenant + endpoint id).
    secret_key_id           TEXT NOT NULL,
    secret_sealed           BYTEA NOT NULL,
    -- After a rotation the previous secret signs too until `previous_expires_at`.
    previous_key_id         TEXT,
    previous_sealed         BYTEA,
    previous_expires_at     TIMESTAMPTZ,
    failing_since           TIMESTAMPTZ,
    disabled_reason         TEXT,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant_created ON webhook_endpoints (tenant_id, created_at DESC, id DESC);

CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,                              -- evt_…
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    type        TEXT NOT NULL,
    key_id      TEXT,
    data        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_tenant_created ON webhook_events (tenant_id, created_at DESC, id DESC);
CREATE INDEX webhook_events_tenant_key_created ON webhook_events (tenant_id, key_id, created_at DESC, id DESC) WHERE key_id IS NOT NULL;
-- key.expiring is written by a sweep: once per key and expiry.
CREATE UNIQUE INDEX webhook_events_expiring_once ON webhook_events (key_id, (data->>'expires_at')) WHERE type = 'key.expiring';

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,                         -- whd_…
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ,                              -- NULL once delivered or failed
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    delivery_id      TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    tenant_id        TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    status           INTEGER,                                  -- the receiver's HTTP status; NULL: no answer
    error            TEXT,                                     -- timeout, connection refused, private address …
    latency_micros   BIGINT NOT NULL,
    next_attempt_at  TIMESTAMPTZ,                              -- when it is tried again (NULL: delivered or given up)
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, attempt)
);
CREATE INDEX webhook_attempts_endpoint_created ON webhook_attempts (endpoint_id, created_at DESC);

-- The sweeps: keys about to expire (key.expiring) and outbox rows past 30 days.
CREATE INDEX vault_keys_active_expires ON vault_keys (expires_at) WHERE status = 'active' AND expires_at IS NOT NULL;
CREATE INDEX webhook_events_created ON webhook_events (created_at);
