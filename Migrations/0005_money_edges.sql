-- The money promise at its edges (see Sources/Proxy/Pipeline/MoneyState.swift for the request's transition table).

-- What Keybrake has counted for a PaymentIntent or charge, so its later confirm, capture or authorization increment
-- is priced at its current amount less what was already counted (never skipped because "it was priced once").
ALTER TABLE priced_objects ADD COLUMN counted_micros BIGINT NOT NULL DEFAULT 0;

-- A settlement may be above the reservation: Twilio reports the real price after the estimate was reserved, and the
-- ledger must count at least what moved.
CREATE OR REPLACE FUNCTION kb_settle(p_reservation_id TEXT, p_outcome TEXT, p_actual BIGINT)
RETURNS TEXT LANGUAGE plpgsql AS $fn$
DECLARE
    r RECORD;
    v_settled BIGINT;
    v_uncounted BIGINT;
BEGIN
    SELECT * INTO r FROM reservations WHERE id = p_reservation_id FOR UPDATE;
    IF NOT FOUND OR r.state NOT IN ('held', 'unknown') THEN RETURN NULL; END IF;
    v_settled := GREATEST(COALESCE(p_actual, r.amount_micros), 0);
    -- What stops counting (a release, the unspent part of a lower settlement), or, negative, what starts counting on
    -- top of the reservation (a settlement above it).
    v_uncounted := CASE p_outcome WHEN 'released' THEN r.amount_micros WHEN 'settled' THEN r.amount_micros - v_settled ELSE 0 END;
    IF v_uncounted <> 0 THEN
        PERFORM 1 FROM spend_counters
        WHERE key_id = r.key_id AND ((period = 'day' AND period_start = r.day) OR (period = 'month' AND period_start = r.month))
        ORDER BY period FOR UPDATE;
        UPDATE spend_counters SET counted_micros = counted_micros - v_uncounted
        WHERE key_id = r.key_id AND ((period = 'day' AND period_start = r.day) OR (period = 'month' AND period_start = r.month));
    END IF;
    UPDATE reservations SET state = p_outcome,
        settled_micros = CASE WHEN p_outcome = 'settled' THEN v_settled ELSE NULL END, updated_at = now()
    WHERE id = p_reservation_id;
    RETURN r.state;
END;
$fn$;

-- Finishes a request's money and idempotency state in its own statement's transaction (see kb_finish_records of
-- 0004; this version adds): completed records live for their own window from now on (a duplicate window shorter
-- than the request's lease no longer lets a parallel identical request take over a live record); records handed
-- back to an earlier request whose outcome is still unknown (`p_restore_owner`) keep that request's id; a settled
-- PaymentIntent or charge adds the amount to what was counted for it.
DROP FUNCTION kb_finish_records(TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT[], TEXT, TEXT[], INTEGER, JSONB, BYTEA, TEXT, DATE);
CREATE FUNCTION kb_finish_records(
    p_tenant_id TEXT, p_owner_id TEXT, p_vendor TEXT, p_reservation_id TEXT, p_outcome TEXT, p_actual BIGINT,
    p_complete_scopes TEXT[], p_complete_windows INTEGER[], p_record_state TEXT, p_restore_owner TEXT, p_drop_scopes TEXT[],
    p_status INTEGER, p_headers JSONB, p_body BYTEA, p_counted_object TEXT, p_count_usage_month DATE
) RETURNS VOID LANGUAGE plpgsql AS $fn$
DECLARE
    v_counted BIGINT;
BEGIN
    -- Idempotency records first, in scope order (the order kb_begin claims them), then the counters.
    PERFORM 1 FROM idempotency_records
    WHERE tenant_id = p_tenant_id AND scope = ANY(p_complete_scopes || p_drop_scopes) ORDER BY scope FOR UPDATE;
    IF p_reservation_id IS NOT NULL THEN
        PERFORM kb_settle(p_reservation_id, p_outcome, p_actual);
    END IF;
    IF cardinality(p_complete_scopes) > 0 THEN
        UPDATE idempotency_records i SET state = p_record_state, response_status = p_status,
            response_headers = p_headers, response_body = p_body,
            owner_id = COALESCE(p_restore_owner, i.owner_id),
            expires_at = now() + make_interval(secs => w.window_seconds)
        FROM unnest(p_complete_scopes, p_complete_windows) AS w(scope, window_seconds)
        WHERE i.tenant_id = p_tenant_id AND i.scope = w.scope AND i.owner_id = p_owner_id;
    END IF;
    IF cardinality(p_drop_scopes) > 0 THEN
        DELETE FROM idempotency_records WHERE tenant_id = p_tenant_id AND scope = ANY(p_drop_scopes) AND owner_id = p_owner_id;
    END IF;
    IF p_counted_object IS NOT NULL AND p_reservation_id IS NOT NULL THEN
        SELECT COALESCE(settled_micros, amount_micros) INTO v_counted FROM reservations WHERE id = p_reservation_id;
        INSERT INTO priced_objects (tenant_id, vendor, object_id, audit_id, counted_micros)
        VALUES (p_tenant_id, p_vendor, p_counted_object, p_owner_id, COALESCE(v_counted, 0))
        ON CONFLICT (tenant_id, vendor, object_id) DO UPDATE SET counted_micros = priced_objects.counted_micros + EXCLUDED.counted_micros;
    END IF;
    -- A request with no quota to check (a pro tenant's unpriced call) is counted here, in a random shard.
    IF p_count_usage_month IS NOT NULL THEN
        INSERT INTO tenant_monthly_usage (tenant_id, month, shard, requests)
        VALUES (p_tenant_id, p_count_usage_month, floor(random() * 16)::smallint, 1)
        ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = tenant_monthly_usage.requests + 1;
    END IF;
END;
$fn$;
