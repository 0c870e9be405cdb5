-- `key.revoked`, from the trigger on vault_keys (status active → revoked), in the revoking transaction. A parent's
-- revocation revokes its active descendants in the same statement: each gets its event.
CREATE OR REPLACE FUNCTION kb_alert_key_revoked() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO events (id, tenant_id, type, key_id, dedupe_key, data)
    VALUES (kb_event_id(), NEW.tenant_id, 'key.revoked', NEW.id, 'revoked:' || NEW.id,
            kb_alert_key_data(NEW.id) || jsonb_build_object('revoked_at', to_char(COALESCE(NEW.revoked_at, now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
    ON CONFLICT (dedupe_key) DO NOTHING;
    RETURN NULL;
END;
$fn$;
