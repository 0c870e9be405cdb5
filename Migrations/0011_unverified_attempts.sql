-- Unverified attempts on a key (a wrong secret, or a client cut off for too many) are not audited one row each:
-- anyone may know a key id, and a row per attempt would let a stranger flood the key's tenant's log (DESIGN §4).
-- A replica writes at most one summary row per key per minute instead (error_code 'unverified_attempts'), and this
-- column says how many attempts it stands for. NULL on every other row.
ALTER TABLE audit_events ADD COLUMN attempts INTEGER;
