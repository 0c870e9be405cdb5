-- Which of a tenant's 16 `tenant_monthly_usage` rows (shards) for a month a counted request goes to. Two rules, on
-- purpose (since 0004_hot_path.sql):
-- * per transaction, txid_current() % 16: kb_reserve (through kb_claim_and_reserve / kb_claim_and_reserve_many,
--   which reserve several requests in one transaction and lock the shard before the key's counters: a second, random
--   shard locked after the counters could deadlock with another transaction's shard-then-counters), and the proxy's
--   AuditOnlyManyStatement (Sources/Proxy/Ledger/LedgerStatements.swift, in SQL there);
-- * random, floor(random() * 16): a single count in its own statement, which holds no other lock: kb_finish_records,
--   and the proxy's AuditOnlyStatement (Sources/Proxy/Ledger/LedgerStatements.swift, in SQL there).
-- The free plan's requests are not sharded: they take shard 0, whose lock makes the quota exact (kb_reserve).
-- A one-expression SQL function: Postgres inlines it into the calling query, so it costs no call.
CREATE OR REPLACE FUNCTION kb_usage_shard(p_per_transaction BOOLEAN) RETURNS SMALLINT LANGUAGE sql VOLATILE AS $fn$
    SELECT CASE WHEN p_per_transaction THEN (txid_current() % 16)::smallint ELSE floor(random() * 16)::smallint END
$fn$;
