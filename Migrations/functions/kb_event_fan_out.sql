-- Every event but a ping gets one pending delivery per enabled endpoint of its tenant that subscribes to its type
-- (an empty `events` list subscribes to all), in the transaction that wrote the event. A ping is delivered only to
-- the endpoint it tests (POST /v1/webhook-endpoints/{id}/test writes that delivery itself).
CREATE OR REPLACE FUNCTION kb_event_fan_out() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.type = 'ping' THEN RETURN NULL; END IF;
    INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, next_attempt_at)
    SELECT 'whd_' || replace(gen_random_uuid()::TEXT, '-', ''), NEW.tenant_id, e.id, NEW.id, NEW.created_at
    FROM webhook_endpoints e
    WHERE e.tenant_id = NEW.tenant_id AND e.enabled AND (cardinality(e.events) = 0 OR NEW.type = ANY(e.events));
    RETURN NULL;
END;
$fn$;
