-- `GET /v1/usage`'s per-day series from counters, not from a month of audit rows (issue 26, DESIGN §16).
--
-- * `tenant_daily_usage`: proxied requests (allowed or replayed) per tenant and closed UTC day, rolled up once from
--   the audit rows by `kb_roll_up_usage` (a background job on every replica), never on a request's path.
-- * `usage_days_rolled`: the days already rolled up, for every tenant at once (a tenant with no request that day has
--   no row above, and the marker says the zero is real). Its primary key makes the roll-up of a day happen once,
--   whichever replica gets there first.
-- A read counts audit rows only for the days not rolled up yet: today, and just after midnight yesterday.
CREATE TABLE tenant_daily_usage (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    day       DATE NOT NULL,
    requests  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

CREATE TABLE usage_days_rolled (
    day       DATE PRIMARY KEY,
    rolled_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
