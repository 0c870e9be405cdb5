-- Where a request's audit row is in its life gets a column of its own instead of borrowing error_code:
--   'in_flight'      written before the request was forwarded (with its reservation, or a call that moves no
--                    money written while it is upstream); completing the row sets it back to NULL;
--   'lease_expired'  the request's lease ran out while it was in flight (its replica died): its outcome is unknown.
-- NULL once the row says how the request ended. error_code is left for errors.
--
-- The column is in no index: completing a row (in_flight → NULL) stays a HOT update (0014). A filter on
-- state=lease_expired is served by the outcome index (such a row is always outcome_unknown; AuditRepository).
-- Added on the partitioned table, so every partition has it; kb_ensure_audit_partitions copies stored columns by name.
ALTER TABLE audit_events ADD COLUMN state TEXT CHECK (state IN ('in_flight', 'lease_expired'));
UPDATE audit_events SET state = error_code, error_code = NULL WHERE error_code IN ('in_flight', 'lease_expired');

-- kb_begin and kb_begin_many read as SQL's BEGIN: their bodies are now Migrations/functions/kb_claim_and_reserve.sql
-- and kb_claim_and_reserve_many.sql (applied after this file). A replica older than this migration calls the old names:
-- run `keybrake migrate`, then roll out every replica promptly (charges on an old replica fail until it is replaced).
DROP FUNCTION IF EXISTS kb_begin_many;
DROP FUNCTION IF EXISTS kb_begin;
