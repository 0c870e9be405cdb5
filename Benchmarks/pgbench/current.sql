-- The database work of one metered charge as Keybrake does it (Migrations/functions/): kb_claim_and_reserve (idempotency claim +
-- reserve, one statement) then the finish statement (audit row + kb_finish_records). One pgbench client = one
-- request in flight, each begin on its own.
\set n random(1, 2000000000)
SELECT * FROM kb_claim_and_reserve('ten_pgb', 'aud_pgb_' || :client_id || '_' || :n, ARRAY['idem:pgb:' || :client_id || ':' || :n],
    ARRAY['h'], ARRAY['k'], ARRAY[86400], 'key_pgb', 1000000, current_date, date_trunc('month', current_date)::date,
    date_trunc('month', current_date)::date, 1000);
WITH audit AS (INSERT INTO audit_events (id, tenant_id, key_id, key_label, vendor, method, path, operation, decision,
        upstream_status, amount_micros, idempotency_key, outcome, overhead_us, upstream_us)
    VALUES ('aud_pgb_' || :client_id || '_' || :n, 'ten_pgb', 'key_pgb', 'bench', 'stripe', 'POST', '/v1/charges',
        'charges.create', 'allowed', 200, 1000000, 'k', 'settled', 100, 100))
SELECT kb_finish_records('ten_pgb', 'aud_pgb_' || :client_id || '_' || :n, 'stripe', 'aud_pgb_' || :client_id || '_' || :n,
    'settled', 1000000, ARRAY['idem:pgb:' || :client_id || ':' || :n], 'completed', '{}'::text[], 200,
    '{"content-type":"application/json"}'::jsonb, '\x7b7d'::bytea, NULL, NULL);
