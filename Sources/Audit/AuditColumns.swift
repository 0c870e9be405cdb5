import PostgresNIO

/// The audit table's columns, written once: the typed INSERT the proxy's statements use (names, placeholders,
/// binding types and `bind`), and the list the readers select (`AuditRepository.decode` reads it in this order).
/// `AuditEvent.columnsJSON` (for `jsonb_populate_record`) and the CSV export name the same columns.
public enum AuditColumns {
    /// Insert column names; `values` has a placeholder for each, in the same order ($1 … $24, then now()).
    public static let names = """
        id, tenant_id, key_id, key_label, vendor, method, path, operation, decision, error_code,
        upstream_status, amount_minor, currency, amount_micros, idempotency_key, idempotency_auto, upstream_request_id,
        run_id, outcome, duplicate_of, resolves, overhead_us, upstream_us, vendor_account, created_at
        """
    /// How many columns a statement binds (all but created_at, which is `now()`).
    public static let count = 24
    public static let values = placeholders(from: 1)

    /// The `count` placeholders starting at `$first` (the 11th cast to int), then now(): for statements that bind the
    /// audit columns after their own parameters.
    public static func placeholders(from first: Int) -> String {
        (0..<count).map { i in "$\(first + i)" + (i == 10 ? "::int" : "") }.joined(separator: ", ") + ", now()"
    }

    /// `column = $n` for every column but id, tenant_id and created_at (the row's identity), with `values`' numbering:
    /// completing a row written before the request was forwarded.
    public static let assignments = """
        key_id = $3, key_label = $4, vendor = $5, method = $6, path = $7, operation = $8, decision = $9, error_code = $10,
        upstream_status = $11::int, amount_minor = $12, currency = $13, amount_micros = $14, idempotency_key = $15,
        idempotency_auto = $16, upstream_request_id = $17, run_id = $18, outcome = $19, duplicate_of = $20, resolves = $21,
        overhead_us = $22, upstream_us = $23, vendor_account = $24
        """

    /// `error_code` of a row written when its request reserved money, before it was forwarded; settling overwrites it.
    public static let inFlight = "in_flight"
    /// Explicit: a NULL binding carries no type, and a statement prepared with one would take the type from its
    /// context (`$11::int` → int4) and then reject the int8 a later request binds there.
    public static let types: [PostgresDataType] = [
        .text, .text, .text, .text, .text, .text, .text, .text, .text, .text,   // id … error_code
        .int8, .int8, .text, .int8, .text, .bool, .text, .text, .text, .text, .text, .int8, .int8,   // upstream_status … upstream_us
        .text,                                                                                        // vendor_account
    ]

    public static func bind(_ e: AuditEvent, into b: inout PostgresBindings) {
        b.append(e.id); b.append(e.tenantId); b.append(e.keyId); b.append(e.keyLabel); b.append(e.vendor); b.append(e.method)
        b.append(e.path); b.append(e.operation); b.append(e.decision.rawValue); b.append(e.errorCode)
        b.append(e.upstreamStatus.map(Int64.init)); b.append(e.amountMinor); b.append(e.currency); b.append(e.amountMicros)
        b.append(e.idempotencyKey); b.append(e.idempotencyAuto); b.append(e.upstreamRequestId); b.append(e.runId)
        b.append(e.outcome?.rawValue); b.append(e.duplicateOf); b.append(e.resolves); b.append(e.overheadUs); b.append(e.upstreamUs)
        b.append(e.vendorAccount)
    }

    /// Binds a NULL per column, in the columns' types: a statement whose audit row is optional.
    public static func bindAbsent(into b: inout PostgresBindings) {
        for type in types {
            switch type {
            case .int8: b.append(Int64?.none)
            case .bool: b.append(Bool?.none)
            default: b.append(String?.none)
            }
        }
    }

    /// What the readers select: every column but tenant_id (reads are scoped by it), in `AuditRecord`'s order, then
    /// the key's parent chain (read from the key, whose chain never changes, so the row needs no copy of it).
    public static let select = """
        id, key_id, key_label, vendor, method, path, operation, decision, error_code, upstream_status, amount_minor,
        currency, amount_micros, idempotency_key, idempotency_auto, upstream_request_id, run_id, outcome, duplicate_of,
        resolves, overhead_us, upstream_us, vendor_account, created_at, attempts,
        COALESCE((SELECT v.ancestor_ids FROM vault_keys v WHERE v.id = audit_events.key_id), '{}') AS parent_key_ids
        """
}
