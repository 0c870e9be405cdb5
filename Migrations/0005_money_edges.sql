-- The money promise at its edges (Sources/Proxy/Pipeline/MoneyState.swift has the request's transition table; the
-- function bodies this needs live in Migrations/functions/: kb_settle settles above a reservation, kb_finish_records
-- keeps records for their own window, hands unknown outcomes back and counts objects).

-- What Keybrake has counted for a PaymentIntent or charge, so its later confirm, capture or authorization increment
-- is priced at its current amount less what was already counted (never skipped because "it was priced once").
ALTER TABLE priced_objects ADD COLUMN counted_micros BIGINT NOT NULL DEFAULT 0;
