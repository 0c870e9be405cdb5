import PostgresNIO

/// The audit table's columns, written once: the typed INSERT the proxy's statements use (names, placeholders,
/// binding types and `bind`), and the list the readers select (`AuditRepository.decode` reads it in this order).
/// `AuditEvent.columnsJSON` (for `jsonb_populate_record`) and the CSV export name the same columns.
public enum AuditColumns {
    /// Insert column names; `values` has a placeholder for each, in the same order ($1 … $23, then now()).
    public static let names = """
        id, tenant_id, key_id, key_label, vendor, method, path, operation, decision, error_code,
        upstream_status, amount_minor, currency, amount_micros, idempotency_key, idempotency_auto, upstream_request_id,
        run_id, outcome, duplicate_of, resolves, overhead_us, upstream_us, created_at
        """
    public static let values = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::int, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, now()"
    /// Explicit: a NULL binding carries no type, and a statement prepared with one would take the type from its
    /// context (`$11::int` → int4) and then reject the int8 a later request binds there.
    public static let types: [PostgresDataType] = [
        .text, .text, .text, .text, .text, .text, .text, .text, .text, .text,   // id … error_code
        .int8, .int8, .text, .int8, .text, .bool, .text, .text, .text, .text, .text, .int8, .int8,   // upstream_status … upstream_us
    ]

    public static func bind(_ e: AuditEvent, into b: inout PostgresBindings) {
        b.append(e.id); b.append(e.tenantId); b.append(e.keyId); b.append(e.keyLabel); b.append(e.vendor); b.append(e.method)
        b.append(e.path); b.append(e.operation); b.append(e.decision.rawValue); b.append(e.errorCode)
        b.append(e.upstreamStatus.map(Int64.init)); b.append(e.amountMinor); b.append(e.currency); b.append(e.amountMicros)
        b.append(e.idempotencyKey); b.append(e.idempotencyAuto); b.append(e.upstreamRequestId); b.append(e.runId)
        b.append(e.outcome?.rawValue); b.append(e.duplicateOf); b.append(e.resolves); b.append(e.overheadUs); b.append(e.upstreamUs)
    }

    /// What the readers select: every column but tenant_id (reads are scoped by it), in `AuditRecord`'s order.
    public static let select = """
        id, key_id, key_label, vendor, method, path, operation, decision, error_code, upstream_status, amount_minor,
        currency, amount_micros, idempotency_key, idempotency_auto, upstream_request_id, run_id, outcome, duplicate_of,
        resolves, overhead_us, upstream_us, created_at
        """
}
