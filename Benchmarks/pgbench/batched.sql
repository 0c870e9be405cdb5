-- The same work for 8 requests whose begins a replica batched (kb_claim_and_reserve_many: one statement, one commit, the key's
-- counters locked once), then their 8 finishes (here in one statement; Keybrake sends one per request). Requests/s
-- = tps × 8.
\set n random(1, 2000000000)
SELECT * FROM kb_claim_and_reserve_many('ten_pgb',
    ARRAY(SELECT 'aud_pgm_' || :client_id || '_' || :n || '_' || g FROM generate_series(1, 8) g),
    array_fill(1000000::bigint, ARRAY[8]), ARRAY(SELECT g FROM generate_series(1, 8) g),
    ARRAY(SELECT 'idem:pgm:' || :client_id || ':' || :n || ':' || g FROM generate_series(1, 8) g),
    array_fill('h'::text, ARRAY[8]), array_fill('k'::text, ARRAY[8]), array_fill(86400, ARRAY[8]),
    'key_pgb', current_date, date_trunc('month', current_date)::date, date_trunc('month', current_date)::date, 1000);
WITH audit AS (INSERT INTO audit_events (id, tenant_id, key_id, key_label, vendor, method, path, operation, decision,
        upstream_status, amount_micros, idempotency_key, outcome, overhead_us, upstream_us)
    SELECT 'aud_pgm_' || :client_id || '_' || :n || '_' || g, 'ten_pgb', 'key_pgb', 'bench', 'stripe', 'POST', '/v1/charges',
        'charges.create', 'allowed', 200, 1000000, 'k', 'settled', 100, 100 FROM generate_series(1, 8) g)
SELECT kb_finish_records('ten_pgb', 'aud_pgm_' || :client_id || '_' || :n || '_' || g, 'stripe',
    'aud_pgm_' || :client_id || '_' || :n || '_' || g, 'settled', 1000000,
    ARRAY['idem:pgm:' || :client_id || ':' || :n || ':' || g], 'completed', '{}'::text[], 200,
    '{"content-type":"application/json"}'::jsonb, '\x7b7d'::bytea, NULL, NULL) FROM generate_series(1, 8) g;
