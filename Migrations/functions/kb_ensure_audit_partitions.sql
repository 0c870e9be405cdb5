-- Monthly partitions from `p_from`'s month through `p_months` months ahead (idempotent).
-- Called at start-up and by `keybrake audit prune`; rows outside any month land in the default partition.
CREATE OR REPLACE FUNCTION kb_ensure_audit_partitions(p_from DATE, p_months INTEGER) RETURNS INTEGER LANGUAGE plpgsql AS $fn$
DECLARE
    m DATE := date_trunc('month', p_from)::date;
    created INTEGER := 0;
    name TEXT;
    -- The stored columns (not the generated filter columns of 0014, which each partition computes itself).
    cols TEXT := (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
                  WHERE attrelid = 'audit_events'::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '');
BEGIN
    FOR i IN 0..p_months LOOP
        name := format('audit_events_%s', to_char(m, 'YYYY_MM'));
        IF to_regclass(name) IS NULL THEN
            -- Move any rows of that month out of the default partition first (attach would fail otherwise).
            EXECUTE format('CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)', name);
            EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM audit_events_default WHERE created_at >= %L AND created_at < %L',
                           name, cols, cols, m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            EXECUTE format('DELETE FROM audit_events_default WHERE created_at >= %L AND created_at < %L',
                           m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           name, m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN created;
END;
$fn$;
