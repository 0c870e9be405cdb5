-- Calibration: one conditional UPDATE of the hot ledger row per transaction (STACK-NOTES: ~3,500 tps at 1 client).
UPDATE spend_ledger SET reserved_micros = reserved_micros + 1 WHERE key_id = 'key_pgb' AND period = 'day' AND period_start = current_date AND settled_micros + reserved_micros + 1 <= 9000000000000000;
