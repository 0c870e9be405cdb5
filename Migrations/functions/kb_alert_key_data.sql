-- What every key event says about its key: tenant, key id and label, vendor, time zone, and for a child key its
-- ancestors (root first). Dollar figures in events are exact decimals (kb_usd) beside integer micro-USD.
CREATE OR REPLACE FUNCTION kb_usd(p_micros BIGINT) RETURNS NUMERIC LANGUAGE sql IMMUTABLE AS $fn$
    SELECT trim_scale(p_micros::NUMERIC / 1000000)
$fn$;

CREATE OR REPLACE FUNCTION kb_alert_key_data(p_key_id TEXT) RETURNS JSONB LANGUAGE sql STABLE AS $fn$
    SELECT jsonb_build_object('tenant_id', k.tenant_id, 'key_id', k.id, 'key_label', k.label, 'vendor', k.vendor,
                              'timezone', k.timezone, 'ancestor_key_ids', to_jsonb(k.ancestor_ids))
    FROM vault_keys k WHERE k.id = p_key_id
$fn$;

-- A new event id: `evt_` and 32 hex digits from the CSPRNG.
CREATE OR REPLACE FUNCTION kb_event_id() RETURNS TEXT LANGUAGE sql VOLATILE AS $fn$
    SELECT 'evt_' || replace(gen_random_uuid()::TEXT, '-', '')
$fn$;
