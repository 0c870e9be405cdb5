-- Leases (DESIGN §7): an in-flight idempotency record lives only as long as its request can (`expires_at` while
-- in flight is the lease: the upstream timeout plus a margin). Every priced request holds at least one record, so
-- a request that died (crash, kill -9, lost connection at settle) is found by its expired in-flight record, and
-- any replica turns it into `outcome_unknown` with an audit row (kb_expire_leases, kb_claim).
CREATE INDEX idempotency_records_in_flight ON idempotency_records (expires_at) WHERE state = 'in_flight';
