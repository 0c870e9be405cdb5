-- Dashboard sign-in sessions. The browser holds a random session id in an HttpOnly cookie; only its SHA-256 is
-- stored, so a copy of this table cannot be replayed as a cookie. Each session belongs to the admin token that
-- opened it: revoking (or deleting) that token ends the session on the next request, on every replica, because
-- every request reads this row joined to the token's status.

CREATE TABLE dashboard_sessions (
    id_hash         BYTEA PRIMARY KEY CHECK (octet_length(id_hash) = 32),   -- SHA-256 of the cookie value
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    admin_token_id  TEXT NOT NULL REFERENCES admin_tokens(id) ON DELETE CASCADE,
    csrf_token      TEXT NOT NULL,                                          -- hidden field of every dashboard form
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX dashboard_sessions_admin_token ON dashboard_sessions (admin_token_id);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
