-- The spend breakdown per key and period, in the shape of 0004's — one join and GROUP BY, which Postgres answers with
-- one pass over the reservations for many keys (the dashboard's overview) or an index scan for one key — extended to a
-- key's descendants: each reservation of a child key counts for the child and for every ancestor, as its counters do
-- (a per-row subquery, 0007's, made Postgres scan the reservations once per key). Its current body: 0004, 0007 and
-- 0009 are its history; re-applied when this file changes (Storage/Migrator.swift).
CREATE OR REPLACE VIEW spend_ledger AS
SELECT c.key_id, c.period, c.period_start, c.counted_micros,
       COALESCE(sum(r.settled_micros) FILTER (WHERE r.state = 'settled'), 0)::bigint AS settled_micros,
       COALESCE(sum(r.amount_micros) FILTER (WHERE r.state = 'held'), 0)::bigint AS reserved_micros,
       COALESCE(sum(r.amount_micros) FILTER (WHERE r.state = 'unknown'), 0)::bigint AS unknown_micros
FROM spend_counters c
LEFT JOIN (
    SELECT r.key_id AS owner_id, r.day, r.month, r.state, r.settled_micros, r.amount_micros FROM reservations r
    UNION ALL
    SELECT a.owner_id, r.day, r.month, r.state, r.settled_micros, r.amount_micros
    FROM vault_keys d CROSS JOIN LATERAL unnest(d.ancestor_ids) AS a(owner_id) JOIN reservations r ON r.key_id = d.id
    WHERE d.parent_key_id IS NOT NULL
) r ON r.owner_id = c.key_id
   AND ((c.period = 'day' AND r.day = c.period_start) OR (c.period = 'month' AND r.month = c.period_start) OR c.period = 'total')
GROUP BY c.key_id, c.period, c.period_start, c.counted_micros;
