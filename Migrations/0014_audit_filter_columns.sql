-- Completing a request's audit row must stay a HOT update. The proxy writes each row before it forwards (error_code
-- 'in_flight', no status, no outcome) and completes it when the vendor answers. Postgres keeps that update on the
-- row's page without touching any index (HOT) only if no indexed column changed; 0012 indexed error_code,
-- upstream_status and outcome, so every completion wrote a new entry into every index of the table: measured +1.3 KB
-- of WAL per GET, +1.8 KB per charge, ~35 % more Postgres CPU per charge and ~25 % fewer charges per second at
-- saturation (README "Benchmarks", 2026-12-07).
--
-- So these three filters are served by stored generated columns that hold a value only where it is not the expected
-- one, and stay NULL through the completion of a request that went as expected (error_code in_flight → none, status
-- → 2xx, outcome → settled): their indexes never change on that path. The expected values (a 2xx status, settled,
-- in_flight) are the bulk of a trail, like decision=allowed: filtering on them alone needs a from/to window
-- (AuditFilter). Rows whose completion sets an unexpected value (an error code, a 402, released, outcome_unknown)
-- pay the index entries, as they should: those are the rows tenants filter for.
DROP INDEX IF EXISTS audit_events_tenant_error_created;
DROP INDEX IF EXISTS audit_events_tenant_outcome_created;
DROP INDEX IF EXISTS audit_events_tenant_status_created;
ALTER TABLE audit_events
    ADD COLUMN filter_error_code TEXT GENERATED ALWAYS AS (NULLIF(error_code, 'in_flight')) STORED,
    ADD COLUMN filter_status INTEGER GENERATED ALWAYS AS (CASE WHEN upstream_status BETWEEN 200 AND 299 THEN NULL ELSE upstream_status END) STORED,
    ADD COLUMN filter_outcome TEXT GENERATED ALWAYS AS (NULLIF(outcome, 'settled')) STORED;
CREATE INDEX audit_events_tenant_filter_error_created
    ON audit_events (tenant_id, filter_error_code, created_at DESC, id DESC) WHERE filter_error_code IS NOT NULL;
CREATE INDEX audit_events_tenant_filter_status_created
    ON audit_events (tenant_id, filter_status, created_at DESC, id DESC) WHERE filter_status IS NOT NULL;
CREATE INDEX audit_events_tenant_filter_outcome_created
    ON audit_events (tenant_id, filter_outcome, created_at DESC, id DESC) WHERE filter_outcome IS NOT NULL;
-- Superseded by kb_finish_records (0004) and never called since; its `SELECT *` insert cannot write a table with
-- generated columns.
DROP FUNCTION IF EXISTS kb_finish;
