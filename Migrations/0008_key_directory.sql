-- Key rows from memory, with acknowledged changes (DESIGN §4, issue 16). Each replica keeps the key rows it has read
-- in memory while it holds a lease here and listens for key changes; a change to a key (revoke, PATCH, and the
-- cascade to its descendants) is one row of `key_changes`, announced with NOTIFY, and the admin request that made it
-- answers only once every replica with a live lease has applied it (`applied_seq`) or lost its lease.

-- One row per key change, in commit order of its sequence number; kept an hour (a replica that lost track clears its
-- memory and starts from the newest sequence number, it never replays old rows).
CREATE TABLE key_changes (
    seq         BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    key_ids     TEXT[] NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The replicas serving keys from memory. A replica renews `lease_until` every heartbeat and stops serving from
-- memory on its own clock before the lease it last wrote runs out, so a replica that cannot reach Postgres (crash,
-- partition) is waited for at most one lease.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until  TIMESTAMPTZ NOT NULL,
    applied_seq  BIGINT NOT NULL DEFAULT 0,
    backend_pid  INTEGER
);
CREATE INDEX replicas_lease ON replicas (lease_until);
