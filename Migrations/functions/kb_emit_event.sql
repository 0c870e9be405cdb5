-- Writes one event into the outbox (webhook_events) and one due delivery for every enabled endpoint of the tenant
-- that takes its type, in the caller's transaction: the event commits with the change it reports, or not at all.
-- Called only when something happened (a threshold crossed, a cap refused, an outcome became unknown, a key was
-- revoked or is about to expire): the proxy's ordinary request never reaches it. Returns the event id.
CREATE OR REPLACE FUNCTION kb_emit_event(p_tenant_id TEXT, p_type TEXT, p_key_id TEXT, p_data JSONB)
RETURNS TEXT LANGUAGE plpgsql AS $fn$
DECLARE
    v_id TEXT := 'evt_' || substr(md5(random()::text || clock_timestamp()::text || p_type || COALESCE(p_key_id, '')), 1, 24);
BEGIN
    INSERT INTO webhook_events (id, tenant_id, type, key_id, data)
    VALUES (v_id, p_tenant_id, p_type, p_key_id, p_data || jsonb_build_object('tenant_id', p_tenant_id));
    INSERT INTO webhook_deliveries (id, tenant_id, event_id, endpoint_id, next_attempt_at)
    SELECT 'whd_' || substr(md5(random()::text || clock_timestamp()::text || e.id || v_id), 1, 24), p_tenant_id, v_id, e.id, now()
    FROM webhook_endpoints e
    WHERE e.tenant_id = p_tenant_id AND e.enabled AND (e.events IS NULL OR p_type = ANY(e.events));
    RETURN v_id;
END;
$fn$;

-- What every key event says about its key: id, label, vendor and, for a child key, its ancestors (root first).
CREATE OR REPLACE FUNCTION kb_key_event_data(p_key_id TEXT) RETURNS JSONB LANGUAGE sql STABLE AS $fn$
    SELECT jsonb_build_object('key_id', id, 'key_label', label, 'vendor', vendor, 'ancestor_ids', to_jsonb(ancestor_ids))
    FROM vault_keys WHERE id = p_key_id
$fn$;

-- The cap a counter period answers to, by its API name, and the period as the tenant reads it.
CREATE OR REPLACE FUNCTION kb_period_data(p_period TEXT, p_start DATE) RETURNS JSONB LANGUAGE sql IMMUTABLE AS $fn$
    SELECT jsonb_build_object(
        'cap_field', CASE p_period WHEN 'day' THEN 'daily_usd_cap' WHEN 'month' THEN 'monthly_usd_cap' ELSE 'total_usd_cap' END,
        'period', CASE p_period WHEN 'day' THEN to_char(p_start, 'YYYY-MM-DD') WHEN 'month' THEN to_char(p_start, 'YYYY-MM') ELSE 'total' END)
$fn$;

-- Dollars as an exact JSON number (12.5, 0.0083) from micro-USD.
CREATE OR REPLACE FUNCTION kb_usd(p_micros BIGINT) RETURNS NUMERIC LANGUAGE sql IMMUTABLE AS $fn$
    SELECT trim_scale(p_micros::numeric / 1000000)
$fn$;

-- One line a person reads (the Slack-compatible format's `text`).
CREATE OR REPLACE FUNCTION kb_event_summary(p_type TEXT, p_data JSONB) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE p_type
        WHEN 'key.spend.threshold_crossed' THEN format('Keybrake: key %s (%s) has spent $%s of its $%s %s cap for %s (%s%%).',
            p_data->>'key_label', p_data->>'key_id', p_data->>'spent_usd', p_data->>'cap_usd', p_data->>'cap_field', p_data->>'period', p_data->>'threshold_percent')
        WHEN 'key.cap.reached' THEN format('Keybrake: key %s (%s) reached its $%s %s for %s; requests are refused until it resets.',
            p_data->>'key_label', p_data->>'key_id', p_data->>'cap_usd', p_data->>'cap_field', p_data->>'period')
        WHEN 'request.outcome_unknown' THEN format('Keybrake: the outcome of request %s on key %s ($%s) is unknown; resolve it (POST /v1/audit/%s/resolve).',
            p_data->>'audit_id', p_data->>'key_label', p_data->>'amount_usd', p_data->>'audit_id')
        WHEN 'key.revoked' THEN format('Keybrake: key %s (%s) was revoked.', p_data->>'key_label', p_data->>'key_id')
        WHEN 'key.expiring' THEN format('Keybrake: key %s (%s) expires at %s.', p_data->>'key_label', p_data->>'key_id', p_data->>'expires_at')
        ELSE format('Keybrake: %s', p_type)
    END
$fn$;
