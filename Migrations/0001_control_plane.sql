-- Control plane: tenants, admin tokens, encrypted vendor credentials, vault keys.
-- Money columns are integer micro-USD (BIGINT). Tokens are stored only as argon2id hashes.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    plan        TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE admin_tokens (
    id          TEXT PRIMARY KEY,                 -- atk_<public id>
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    label       TEXT,
    token_hash  TEXT NOT NULL CHECK (token_hash LIKE '$argon2id$%'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX admin_tokens_tenant ON admin_tokens (tenant_id);

CREATE TABLE vendor_credentials (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    vendor         TEXT NOT NULL CHECK (vendor IN ('stripe', 'twilio', 'resend')),
    master_key_id  TEXT NOT NULL,                 -- which master key sealed this row
    sealed         BYTEA NOT NULL,                -- AES-256-GCM nonce || ciphertext || tag
    fingerprint    TEXT NOT NULL,                 -- "…last4" of the main secret, for display
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor)
);
CREATE INDEX vendor_credentials_master_key ON vendor_credentials (master_key_id);

CREATE TABLE vault_keys (
    id                        TEXT PRIMARY KEY,   -- key_<public id>
    tenant_id                 TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    vendor                    TEXT NOT NULL CHECK (vendor IN ('stripe', 'twilio', 'resend')),
    label                     TEXT NOT NULL,
    token_hash                TEXT NOT NULL CHECK (token_hash LIKE '$argon2id$%'),
    status                    TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    allowed_endpoints         TEXT[] NOT NULL,
    daily_cap_micros          BIGINT CHECK (daily_cap_micros > 0),
    monthly_cap_micros        BIGINT CHECK (monthly_cap_micros > 0),
    max_request_micros        BIGINT CHECK (max_request_micros > 0),
    expires_at                TIMESTAMPTZ,
    rate_limit_per_minute     INTEGER CHECK (rate_limit_per_minute > 0),
    auto_idempotency          BOOLEAN NOT NULL DEFAULT true,
    duplicate_window_seconds  INTEGER NOT NULL DEFAULT 86400 CHECK (duplicate_window_seconds >= 0),
    timezone                  TEXT NOT NULL DEFAULT 'UTC',
    allowed_stripe_accounts   TEXT[] NOT NULL DEFAULT '{}',
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at                TIMESTAMPTZ
);
-- Keyset pagination of a tenant's keys, newest first.
CREATE INDEX vault_keys_tenant_created ON vault_keys (tenant_id, created_at DESC, id DESC);

-- Metering: proxied requests per tenant per UTC calendar month (month = first day).
CREATE TABLE tenant_monthly_usage (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    month      DATE NOT NULL,
    requests   BIGINT NOT NULL DEFAULT 0 CHECK (requests >= 0),
    PRIMARY KEY (tenant_id, month)
);
