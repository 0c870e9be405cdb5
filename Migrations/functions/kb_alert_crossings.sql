-- `key.spend.threshold_crossed` for every threshold that the counters of `p_chain` (already moved up by
-- `p_added` in this transaction, and locked by it) have just crossed: spent - added < threshold % of the cap <= spent.
-- Called by kb_reserve (only when its own check saw a crossing) and by kb_settle (a settlement above the
-- reservation), so the event commits with the spend that crossed, or not at all. Each key's thresholds are its own
-- `alert_thresholds`, else its nearest ancestor's, else 50 / 80 / 100; an ancestor's thresholds fire on its own
-- counters. The dedupe key (key, cap field, period, threshold) makes a second crossing in one period (after a
-- release took the counter back down) insert nothing. Returns the number of events written.
CREATE OR REPLACE FUNCTION kb_alert_crossings(
    p_tenant_id TEXT, p_key_id TEXT, p_chain TEXT[], p_day DATE, p_month DATE, p_added BIGINT, p_audit_id TEXT
) RETURNS INTEGER LANGUAGE plpgsql AS $fn$
DECLARE
    n INTEGER;
BEGIN
    WITH chain AS (
        SELECT k.id, k.daily_cap_micros, k.monthly_cap_micros, k.total_cap_micros,
               COALESCE(k.alert_thresholds,
                        (SELECT a.alert_thresholds FROM vault_keys a
                         WHERE a.id = ANY(k.ancestor_ids) AND a.alert_thresholds IS NOT NULL
                         ORDER BY array_position(k.ancestor_ids, a.id) DESC LIMIT 1),
                        '{50,80,100}'::SMALLINT[]) AS thresholds
        FROM vault_keys k WHERE k.id = ANY(p_chain)
    ), counters AS (
        SELECT ch.id, ch.thresholds, c.counted_micros AS spent,
               CASE c.period WHEN 'day' THEN ch.daily_cap_micros WHEN 'month' THEN ch.monthly_cap_micros ELSE ch.total_cap_micros END AS cap,
               CASE c.period WHEN 'day' THEN 'daily_usd_cap' WHEN 'month' THEN 'monthly_usd_cap' ELSE 'total_usd_cap' END AS cap_field,
               CASE c.period WHEN 'day' THEN to_char(p_day, 'YYYY-MM-DD') WHEN 'month' THEN to_char(p_month, 'YYYY-MM') ELSE 'total' END AS period
        FROM chain ch JOIN spend_counters c ON c.key_id = ch.id
         AND ((c.period = 'day' AND c.period_start = p_day) OR (c.period = 'month' AND c.period_start = p_month)
           OR (c.period = 'total' AND c.period_start = DATE '1970-01-01'))
    ), crossed AS (
        SELECT x.*, t.threshold
        FROM counters x, unnest(x.thresholds) AS t(threshold)
        WHERE x.cap IS NOT NULL
          AND (x.spent - p_added) * 100 < t.threshold::BIGINT * x.cap AND x.spent * 100 >= t.threshold::BIGINT * x.cap
    )
    INSERT INTO events (id, tenant_id, type, key_id, period, dedupe_key, data)
    SELECT kb_event_id(), p_tenant_id, 'key.spend.threshold_crossed', x.id, x.period,
           'threshold:' || x.id || ':' || x.cap_field || ':' || x.period || ':' || x.threshold,
           kb_alert_key_data(x.id) || jsonb_build_object(
               'cap_field', x.cap_field, 'period', x.period, 'threshold_percent', x.threshold,
               'cap_usd', kb_usd(x.cap), 'spent_usd', kb_usd(x.spent), 'previous_spent_usd', kb_usd(x.spent - p_added),
               'cap_micros', x.cap, 'spent_micros', x.spent, 'previous_spent_micros', x.spent - p_added,
               'requested_by_key_id', p_key_id, 'audit_id', p_audit_id)
    FROM crossed x
    ORDER BY array_position(p_chain, x.id), x.cap_field, x.threshold
    ON CONFLICT (dedupe_key) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$fn$;
