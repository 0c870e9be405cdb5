-- The spend breakdown per key and period (view `spend_ledger`, from 0007) read through the reservations' indexes:
-- 0007's `key_id IN (subquery)` with OR'd period conditions let Postgres scan every reservation for every counter
-- row (the dashboard's overview timed out on the benchmark's tenant). Here each period has its own lateral sum, on
-- `key_id = ANY(the key and its descendants)` and the period's own column, and only the one matching the row's
-- period runs.
CREATE OR REPLACE VIEW spend_ledger AS
SELECT c.key_id, c.period, c.period_start, c.counted_micros,
       COALESCE(sd.settled_micros, sm.settled_micros, st.settled_micros, 0)::bigint AS settled_micros,
       COALESCE(sd.reserved_micros, sm.reserved_micros, st.reserved_micros, 0)::bigint AS reserved_micros,
       COALESCE(sd.unknown_micros, sm.unknown_micros, st.unknown_micros, 0)::bigint AS unknown_micros
FROM spend_counters c
CROSS JOIN LATERAL (
    SELECT ARRAY(SELECT c.key_id UNION ALL
                 SELECT d.id FROM vault_keys d WHERE d.parent_key_id IS NOT NULL AND d.ancestor_ids @> ARRAY[c.key_id]) AS ids
) k
LEFT JOIN LATERAL (
    SELECT sum(r.settled_micros) FILTER (WHERE r.state = 'settled') AS settled_micros,
           sum(r.amount_micros) FILTER (WHERE r.state = 'held') AS reserved_micros,
           sum(r.amount_micros) FILTER (WHERE r.state = 'unknown') AS unknown_micros
    FROM reservations r WHERE c.period = 'day' AND r.key_id = ANY(k.ids) AND r.day = c.period_start
) sd ON c.period = 'day'
LEFT JOIN LATERAL (
    SELECT sum(r.settled_micros) FILTER (WHERE r.state = 'settled') AS settled_micros,
           sum(r.amount_micros) FILTER (WHERE r.state = 'held') AS reserved_micros,
           sum(r.amount_micros) FILTER (WHERE r.state = 'unknown') AS unknown_micros
    FROM reservations r WHERE c.period = 'month' AND r.key_id = ANY(k.ids) AND r.month = c.period_start
) sm ON c.period = 'month'
LEFT JOIN LATERAL (
    SELECT sum(r.settled_micros) FILTER (WHERE r.state = 'settled') AS settled_micros,
           sum(r.amount_micros) FILTER (WHERE r.state = 'held') AS reserved_micros,
           sum(r.amount_micros) FILTER (WHERE r.state = 'unknown') AS unknown_micros
    FROM reservations r WHERE c.period = 'total' AND r.key_id = ANY(k.ids)
) st ON c.period = 'total';
