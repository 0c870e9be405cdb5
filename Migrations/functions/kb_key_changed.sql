-- Records a change to some keys (and, for a revocation, their descendants) and announces it to every replica
-- (NOTIFY is delivered at commit, so no replica hears of a change that did not commit). Returns the change's
-- sequence number, which the caller waits for in `replicas.applied_seq`. Key changes take one lock until their commit,
-- so they commit in sequence order: a replica that applied change n has seen every change before it (a sequence
-- number handed out earlier but committed later would otherwise slip past `seq > applied`).
CREATE OR REPLACE FUNCTION kb_key_changed(p_tenant_id TEXT, p_key_ids TEXT[]) RETURNS BIGINT LANGUAGE plpgsql AS $fn$
DECLARE
    v_seq BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(7021348843650001);
    INSERT INTO key_changes (tenant_id, key_ids) VALUES (p_tenant_id, p_key_ids) RETURNING seq INTO v_seq;
    PERFORM pg_notify('kb_key_changes', v_seq::text);
    RETURN v_seq;
END;
$fn$;
