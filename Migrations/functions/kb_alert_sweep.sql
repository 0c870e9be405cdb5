-- The periodic part of alerts, run by every replica's delivery service (any replica may run it; the dedupe keys make
-- running it twice harmless): `key.expiring` for active keys that expire within 24 h of `p_now` — only keys that
-- lived longer than a day, so a child minted for an hour's run does not announce its own end —, once per expiry
-- (a PATCHed expires_at is a new one); and the outbox pruned after 30 days (deliveries go with their events), a
-- bounded batch per call. Returns the number of expiring events written.
CREATE OR REPLACE FUNCTION kb_alert_sweep(p_now TIMESTAMPTZ, p_prune_limit INTEGER) RETURNS INTEGER LANGUAGE plpgsql AS $fn$
DECLARE
    n INTEGER;
BEGIN
    INSERT INTO events (id, tenant_id, type, key_id, dedupe_key, data)
    SELECT kb_event_id(), k.tenant_id, 'key.expiring', k.id,
           'expiring:' || k.id || ':' || floor(extract(epoch FROM k.expires_at))::BIGINT,
           kb_alert_key_data(k.id) || jsonb_build_object(
               'expires_at', to_char(k.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
               'expires_in_seconds', floor(extract(epoch FROM k.expires_at - p_now))::BIGINT)
    FROM vault_keys k
    WHERE k.status = 'active' AND k.expires_at IS NOT NULL AND k.expires_at > p_now
      AND k.expires_at <= p_now + interval '24 hours' AND k.expires_at - k.created_at > interval '24 hours'
    ON CONFLICT (dedupe_key) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM events WHERE id IN (
        SELECT id FROM events WHERE created_at < p_now - interval '30 days' ORDER BY created_at LIMIT p_prune_limit);
    RETURN n;
END;
$fn$;
