-- The sweep every replica runs (every few seconds): expires the in-flight records whose lease ran out, a bounded
-- batch at a time; records another transaction holds are skipped (that request is alive, or someone else sweeps).
CREATE OR REPLACE FUNCTION kb_expire_leases(p_limit INTEGER) RETURNS INTEGER LANGUAGE plpgsql AS $fn$
DECLARE
    r RECORD;
    n INTEGER := 0;
BEGIN
    FOR r IN SELECT tenant_id, scope FROM idempotency_records
             WHERE state = 'in_flight' AND expires_at <= now()
             ORDER BY expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED LOOP
        n := n + kb_expire_in_flight(r.tenant_id, r.scope);
    END LOOP;
    RETURN n;
END;
$fn$;
