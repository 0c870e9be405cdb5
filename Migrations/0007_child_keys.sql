-- Child keys (DESIGN §9, issue 15): a vault key can mint narrower children, per run. A child's spend counts against
-- the child and every ancestor in the same statement (kb_reserve), so a parent's counters hold the spend of its
-- whole subtree.
--
-- * `ancestor_ids` is the chain from the root to the parent, root first. It never changes after the key is made,
--   and it is the lock order of kb_reserve and kb_settle (root first, then down): two requests that lock the same
--   keys' counters always lock them in the same order.
-- * `total_cap_micros` is a lifetime cap, on any key; its counter is the period 'total' with period_start
--   1970-01-01, kept for every key (a cap added later then sees the spend before it).
-- * Keys of one chain share a time zone (a child inherits its parent's; a key with children cannot change it), so
--   one request's day and month are the same dates on every key of its chain.

ALTER TABLE vault_keys
    ADD COLUMN parent_key_id    TEXT REFERENCES vault_keys(id),
    ADD COLUMN ancestor_ids     TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN run_id           TEXT,
    ADD COLUMN total_cap_micros BIGINT CHECK (total_cap_micros > 0),
    ADD CONSTRAINT vault_keys_chain CHECK ((parent_key_id IS NULL) = (cardinality(ancestor_ids) = 0)
        AND (parent_key_id IS NULL OR ancestor_ids[cardinality(ancestor_ids)] = parent_key_id));

-- A key's children, newest first (GET /v1/keys/{id}/children, fan-out limit).
CREATE INDEX vault_keys_parent_created ON vault_keys (parent_key_id, created_at DESC, id DESC) WHERE parent_key_id IS NOT NULL;
-- A key's whole subtree (`ancestor_ids @> ARRAY[id]`): cascade revocation, audit by parent, subtree spend.
CREATE INDEX vault_keys_ancestors ON vault_keys USING gin (ancestor_ids) WHERE parent_key_id IS NOT NULL;

-- The constraint kept the name of the table it was made with (spend_ledger, renamed in 0004).
ALTER TABLE spend_counters DROP CONSTRAINT spend_ledger_period_check;
ALTER TABLE spend_counters ADD CONSTRAINT spend_counters_period_check CHECK (period IN ('day', 'month', 'total'));

-- Lifetime counters of the keys that exist: what they have counted so far.
INSERT INTO spend_counters (key_id, period, period_start, counted_micros)
SELECT k.id, 'total', DATE '1970-01-01',
       COALESCE((SELECT sum(CASE r.state WHEN 'settled' THEN r.settled_micros WHEN 'released' THEN 0 ELSE r.amount_micros END)
                 FROM reservations r WHERE r.key_id = k.id), 0)
FROM vault_keys k
ON CONFLICT DO NOTHING;

-- The breakdown per key and period now covers the key's subtree, as its counter does.
CREATE OR REPLACE VIEW spend_ledger AS
SELECT c.key_id, c.period, c.period_start, c.counted_micros,
       COALESCE(s.settled_micros, 0)::bigint AS settled_micros,
       COALESCE(s.reserved_micros, 0)::bigint AS reserved_micros,
       COALESCE(s.unknown_micros, 0)::bigint AS unknown_micros
FROM spend_counters c
LEFT JOIN LATERAL (
    SELECT sum(r.settled_micros) FILTER (WHERE r.state = 'settled') AS settled_micros,
           sum(r.amount_micros) FILTER (WHERE r.state = 'held') AS reserved_micros,
           sum(r.amount_micros) FILTER (WHERE r.state = 'unknown') AS unknown_micros
    FROM reservations r
    WHERE r.key_id IN (SELECT c.key_id UNION ALL
                       SELECT d.id FROM vault_keys d WHERE d.parent_key_id IS NOT NULL AND d.ancestor_ids @> ARRAY[c.key_id])
      AND ((c.period = 'day' AND r.day = c.period_start) OR (c.period = 'month' AND r.month = c.period_start) OR c.period = 'total')
) s ON true;
