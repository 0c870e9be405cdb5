-- The same request with the shape proposed in the bench report (functions in proposed-functions.sql):
-- claim + reserve in one statement that locks both ledger rows once; settle at the reserved amount leaves the ledger alone.
\set n random(1, 2000000000)
SELECT bench_exp.begin1('key_pgb', 'ten_pgb', 1000000, current_date, date_trunc('month', current_date)::date, 'pgc_' || :client_id || '_' || :n, 'idem:pgc:' || :client_id || ':' || :n);
SELECT bench_exp.finish1(('{"id":"aud_pgc_' || :client_id || '_' || :n || '","tenant_id":"ten_pgb","key_id":"key_pgb","vendor":"stripe","method":"POST","path":"/v1/charges","decision":"allowed","amount_micros":1000000,"idempotency_auto":false,"idempotency_key":"k","overhead_us":100,"upstream_us":100,"upstream_status":200,"outcome":"settled","key_label":"bench","operation":"charges.create"}')::jsonb, 'pgc_' || :client_id || '_' || :n, 'idem:pgc:' || :client_id || ':' || :n);
