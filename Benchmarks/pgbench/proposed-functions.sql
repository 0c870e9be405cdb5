-- EXPERIMENT ONLY (loaded into a throwaway database by Benchmarks/pgbench/run.sh): the proposed shape of the hot-key SQL.
-- Not complete (no monthly-cap/quota/status branches), just enough to measure the lock pattern.
CREATE SCHEMA IF NOT EXISTS bench_exp;
-- Proposed shape: claim + reserve in one statement touching the hot rows once (one SELECT … FOR UPDATE of both
-- ledger rows, one UPDATE); settle at the reserved amount does not touch the ledger (it holds committed = reserved +
-- settled); usage is counted off the hot path (pro tenants).
CREATE OR REPLACE FUNCTION bench_exp.begin1(p_key TEXT, p_tenant TEXT, p_amount BIGINT, p_day DATE, p_month DATE, p_res TEXT, p_scope TEXT)
RETURNS TEXT LANGUAGE plpgsql AS $fn$
DECLARE k RECORD; v_day BIGINT; v_month BIGINT;
BEGIN
  INSERT INTO idempotency_records (tenant_id, scope, request_hash, state, owner_id, reservation_id, upstream_key, expires_at)
  VALUES (p_tenant, p_scope, 'h', 'in_flight', 'aud_' || p_res, p_res, 'k', now() + interval '1 day') ON CONFLICT DO NOTHING;
  SELECT status, daily_cap_micros, monthly_cap_micros INTO k FROM vault_keys WHERE id = p_key;
  SELECT max(CASE WHEN period = 'day' THEN settled_micros + reserved_micros + unknown_micros END),
         max(CASE WHEN period = 'month' THEN settled_micros + reserved_micros + unknown_micros END)
    INTO v_day, v_month
    FROM (SELECT * FROM spend_ledger WHERE key_id = p_key AND ((period = 'day' AND period_start = p_day) OR (period = 'month' AND period_start = p_month))
          ORDER BY period FOR UPDATE) s;
  IF k.status <> 'active' THEN RETURN 'vault_key_revoked'; END IF;
  IF k.daily_cap_micros IS NOT NULL AND v_day + p_amount > k.daily_cap_micros THEN RETURN 'daily_usd_cap_exceeded'; END IF;
  IF k.monthly_cap_micros IS NOT NULL AND v_month + p_amount > k.monthly_cap_micros THEN RETURN 'monthly_usd_cap_exceeded'; END IF;
  UPDATE spend_ledger SET reserved_micros = reserved_micros + p_amount
   WHERE key_id = p_key AND ((period = 'day' AND period_start = p_day) OR (period = 'month' AND period_start = p_month));
  INSERT INTO reservations (id, tenant_id, key_id, amount_micros, day, month, state) VALUES (p_res, p_tenant, p_key, p_amount, p_day, p_month, 'held');
  RETURN 'ok';
END $fn$;
CREATE OR REPLACE FUNCTION bench_exp.finish1(p_audit JSONB, p_res TEXT, p_scope TEXT) RETURNS VOID LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE reservations SET state = 'settled', settled_micros = amount_micros, updated_at = now() WHERE id = p_res AND state = 'held';
  INSERT INTO audit_events SELECT * FROM jsonb_populate_record(NULL::audit_events, jsonb_build_object('created_at', now()) || p_audit);
  UPDATE idempotency_records SET state = 'completed', response_status = 200, response_headers = '{"content-type":"application/json"}', response_body = '\x7b7d'
   WHERE tenant_id = p_audit->>'tenant_id' AND scope = p_scope;
END $fn$;
