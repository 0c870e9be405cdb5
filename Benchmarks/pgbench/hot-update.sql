-- Calibration: one conditional UPDATE of the hot counter row per transaction (STACK-NOTES: ~3,500 tps at 1 client).
UPDATE spend_counters SET counted_micros = counted_micros + 1 WHERE key_id = 'key_pgb' AND period = 'day' AND period_start = current_date AND counted_micros + 1 <= 9000000000000000;
