-- Every audit filter GET /v1/audit and the dashboard offer is served by an index, or (decision=allowed alone)
-- needs a bounded from/to window (DESIGN §16, README "Admin reads"): a filter over a tenant's 2,000,000 rows reads
-- a page of index entries, not the whole history. Each index leads with tenant_id and ends with the list's order
-- (created_at DESC, id DESC), so a page is the first entries of one index range. The partial ones skip the rows
-- nobody filters for (most rows have no error code and no outcome; 'allowed' is the bulk of any trail), so the
-- data plane's audit inserts pay for them only where they hold a row.
CREATE INDEX IF NOT EXISTS audit_events_tenant_error_created
    ON audit_events (tenant_id, error_code, created_at DESC, id DESC) WHERE error_code IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_tenant_outcome_created
    ON audit_events (tenant_id, outcome, created_at DESC, id DESC) WHERE outcome IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_tenant_status_created
    ON audit_events (tenant_id, upstream_status, created_at DESC, id DESC) WHERE upstream_status IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_tenant_decision_created
    ON audit_events (tenant_id, decision, created_at DESC, id DESC) WHERE decision <> 'allowed';
CREATE INDEX IF NOT EXISTS audit_events_tenant_vendor_created
    ON audit_events (tenant_id, vendor, created_at DESC, id DESC);
