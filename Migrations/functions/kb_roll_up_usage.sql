-- Rolls up the proxied requests (allowed or replayed) of every closed UTC day of the last p_days that is not rolled
-- up yet into tenant_daily_usage (0016). A day counts as closed 10 minutes after its end, so a request's audit row
-- written across midnight is in. Two replicas rolling up at once: the marker's primary key lets one do each day (the
-- other waits for its commit and skips the day). Returns how many days it rolled up.
CREATE OR REPLACE FUNCTION kb_roll_up_usage(p_days INTEGER) RETURNS INTEGER LANGUAGE plpgsql AS $fn$
DECLARE
    v_closed DATE := ((now() - interval '10 minutes') AT TIME ZONE 'UTC')::date;  -- the first day not closed
    v_day DATE;
    v_rolled INTEGER := 0;
BEGIN
    FOR v_day IN SELECT d::date FROM generate_series(v_closed - p_days, v_closed - 1, interval '1 day') AS d LOOP
        INSERT INTO usage_days_rolled (day) VALUES (v_day) ON CONFLICT DO NOTHING;
        CONTINUE WHEN NOT FOUND;
        INSERT INTO tenant_daily_usage (tenant_id, day, requests)
        SELECT tenant_id, v_day, count(*) FROM audit_events
        WHERE created_at >= (v_day::timestamp AT TIME ZONE 'UTC') AND created_at < ((v_day + 1)::timestamp AT TIME ZONE 'UTC')
          AND decision IN ('allowed', 'replayed')
        GROUP BY tenant_id;
        v_rolled := v_rolled + 1;
    END LOOP;
    RETURN v_rolled;
END;
$fn$;
