import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// Reads the audit trail. Every query is scoped by tenant, including cursor positioning. Reads go through
/// `reads` (the admin pool, under its statement timeout and per-tenant limit: DESIGN §16); resolving (a write)
/// and partition upkeep use `client`, the data plane's pool.
public struct AuditRepository: Sendable {
    let client: DatabasePool
    let reads: AdminReads

    public init(client: DatabasePool, reads: AdminReads? = nil) {
        self.client = client
        self.reads = reads ?? AdminReads(client: client)
    }

    static let columns = AuditColumns.select

    /// Rows selected with `columns`, cell by cell in `AuditColumns.read`'s order.
    static func decode(_ rows: [PostgresRow]) throws -> [AuditRecord] {
        var out: [AuditRecord] = []
        out.reserveCapacity(rows.count)
        for row in rows {
            var record = AuditRecord()
            var cells = row.makeIterator()
            for column in AuditColumns.read {
                guard let cell = cells.next() else { throw KeybrakeError.internalError }
                try column.decode!(&record, cell)
            }
            out.append(record)
        }
        return out
    }

    /// Newest first. `after` is the id of the last row of the previous page; nil result = cursor not this tenant's.
    public func list(tenantId: String, filter: AuditFilter, after: String?, limit: Int, logger: Logger) async throws -> [AuditRecord]? {
        var binds = PostgresBindings()
        var conditions: [String] = []
        func bind<T: PostgresNonThrowingEncodable & Sendable>(_ value: T) -> String {
            binds.append(value)
            return "$\(binds.count)"
        }
        conditions.append("tenant_id = \(bind(tenantId))")
        if let v = filter.keyId { conditions.append("key_id = \(bind(v))") }
        if let v = filter.parentKeyId {
            // Rows of every descendant of the key (its children's, their children's…).
            let t = bind(tenantId)
            conditions.append("key_id IN (SELECT id FROM vault_keys WHERE tenant_id = \(t) AND parent_key_id IS NOT NULL AND ancestor_ids @> ARRAY[\(bind(v))])")
        }
        if let v = filter.vendor { conditions.append("vendor = \(bind(v))") }
        // decision, outcome and state are validated against fixed lists (AuditFilter.parse): written as literals, so the
        // planner matches the partial indexes of Migrations/0012 and 0014 whatever plan it caches. Status, error code
        // and outcome other than the expected values read the generated filter columns, which are what is indexed
        // (error_code has no expected value since 0017 moved in_flight to state: filter_error_code serves them all).
        if let v = filter.decision, AuditFilter.decisions.contains(v) { conditions.append("decision = '\(v)'") }
        if let v = filter.status {
            conditions.append(AuditFilter.isExpected(status: v) ? "upstream_status = \(bind(v))" : "filter_status = \(bind(v))")
        }
        if let v = filter.errorCode { conditions.append("filter_error_code = \(bind(v))") }
        if let v = filter.state, AuditFilter.states.contains(v) {
            // A lease_expired row is always outcome_unknown (kb_expire_in_flight sets both): the outcome index finds it.
            conditions.append(v == AuditFilter.expectedState ? "state = '\(v)'" : "filter_outcome = 'outcome_unknown' AND state = '\(v)'")
        }
        if let v = filter.from { conditions.append("created_at >= \(bind(v))") }
        if let v = filter.to { conditions.append("created_at < \(bind(v))") }
        if let v = filter.idempotencyKey { conditions.append("idempotency_key = \(bind(v))") }
        if let v = filter.runId { conditions.append("run_id = \(bind(v))") }
        if let v = filter.outcome, AuditFilter.outcomes.contains(v) {
            conditions.append(v == AuditFilter.expectedOutcome ? "outcome = '\(v)'" : "filter_outcome = '\(v)'")
        }
        if let after {
            let t = bind(tenantId)
            let a = bind(after)
            conditions.append("(created_at, id) < (SELECT created_at, id FROM audit_events WHERE tenant_id = \(t) AND id = \(a))")
        }
        let sql = "SELECT \(Self.columns) FROM audit_events WHERE \(conditions.joined(separator: " AND ")) ORDER BY created_at DESC, id DESC LIMIT \(bind(limit))"
        let rows = try Self.decode(try await reads.rows(PostgresQuery(unsafeSQL: sql, binds: binds), tenantId: tenantId, logger: logger))
        if rows.isEmpty, let after, try await record(tenantId: tenantId, id: after, logger: logger) == nil { return nil }
        return rows
    }

    /// `fromPrimary`: the row this request has just written (a standby may not have replayed it yet). A row the
    /// standby does not have (yet) is looked for on the primary too: a link to a row just written never 404s.
    public func record(tenantId: String, id: String, fromPrimary: Bool = false, logger: Logger) async throws -> AuditRecord? {
        let query: PostgresQuery = "SELECT \(unescaped: Self.columns) FROM audit_events WHERE tenant_id = \(tenantId) AND id = \(id)"
        if !fromPrimary || !reads.prefersStandby {
            let found = try Self.decode(try await reads.rows(query, tenantId: tenantId, logger: logger)).first
            if found != nil || !reads.prefersStandby { return found }
        }
        return try Self.decode(try await reads.onPrimary().rows(query, tenantId: tenantId, logger: logger)).first
    }

    /// How an earlier request with an unknown outcome was resolved, if it was.
    public func resolution(tenantId: String, of id: String, logger: Logger) async throws -> AuditRecord? {
        try Self.decode(try await reads.rows(
            "SELECT \(unescaped: Self.columns) FROM audit_events WHERE tenant_id = \(tenantId) AND resolves = \(id) ORDER BY created_at LIMIT 1",
            tenantId: tenantId, logger: logger
        )).first
    }

    public enum ResolveResult: Sendable, Equatable {
        case ok
        case refused(String, reserved: Int64)
    }

    public enum Resolution: Sendable, Equatable {
        /// The appended `resolved` event's id.
        case resolved(String)
        case notFound
        /// kb_resolve's refusal code (`amount_too_large`, `already_<state>`, `no_reservation`) and the amount reserved.
        case refused(String, reserved: Int64)
    }

    /// Resolves an earlier request whose outcome was unknown: appends a `resolved` event copied from the original
    /// and moves its reservation once. Shared by the admin API and the dashboard; each renders the result its way.
    public func resolve(tenantId: String, auditId: String, outcome: String, amount: MicroUSD?, logger: Logger) async throws -> Resolution {
        guard let original = try await record(tenantId: tenantId, id: auditId, logger: logger) else { return .notFound }
        // Two kinds of row name, in `resolves`, the request whose money they are about; resolving them resolves that
        // request. The `lease_expired` row of a request whose replica died (for old requests a `resolved` row of its
        // own). And a retry that resumed an unknown outcome and met another failure: the money is the retried
        // request's reservation. A resolution event's `resolves` names what it already resolved.
        let isResolution = original.decision == AuditEvent.Decision.resolved.rawValue && original.state != AuditEvent.State.leaseExpired.rawValue
        let requestId = isResolution ? original.id : (original.resolves ?? original.id)
        var event = AuditEvent(tenantId: tenantId, vendor: original.vendor, method: original.method, path: original.path)
        event.keyId = original.keyId
        event.keyLabel = original.keyLabel
        event.operation = original.operation
        event.decision = .resolved
        event.outcome = outcome == "settled" ? .settled : .released
        event.amountMicros = outcome == "settled" ? (amount?.micros ?? 0) : 0
        event.resolves = requestId
        event.runId = original.runId
        switch try await resolve(tenantId: tenantId, auditId: requestId, outcome: outcome, amount: amount, event: event, logger: logger) {
        case .ok: return .resolved(event.id)
        case .refused(let code, let reserved): return .refused(code, reserved: reserved)
        }
    }

    public func resolve(tenantId: String, auditId: String, outcome: String, amount: MicroUSD?, event: AuditEvent, logger: Logger) async throws -> ResolveResult {
        let rows = try await client.query("""
            SELECT result, reserved FROM kb_resolve(\(tenantId), \(auditId), \(outcome), \(amount?.micros)::bigint, \(try event.columnsJSON())::jsonb)
            """, logger: logger)
        for try await (result, reserved) in rows.decode((String, Int64).self) {
            return result == "ok" ? .ok : .refused(result, reserved: reserved)
        }
        throw KeybrakeError.internalError
    }

    /// Drops whole monthly partitions that end on or before `before` and deletes older rows left in the
    /// default partition. Returns (partitions dropped, rows deleted).
    public func prune(before: Date, logger: Logger) async throws -> (partitions: [String], rows: Int) {
        var dropped: [String] = []
        let parts = try await client.query("""
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = 'audit_events' AND c.relname <> 'audit_events_default'
            """, logger: logger)
        var candidates: [(String, String)] = []
        for try await row in parts.decode((String, String).self) { candidates.append(row) }
        for (name, bound) in candidates {
            // bound: FOR VALUES FROM ('…') TO ('…')
            guard let toRange = bound.range(of: "TO ('"), let end = bound[toRange.upperBound...].firstIndex(of: "'") else { continue }
            let upper = String(bound[toRange.upperBound..<end])
            let rows = try await client.query("SELECT \(upper)::timestamptz <= \(before)", logger: logger)
            var old = false
            for try await b in rows.decode(Bool.self) { old = b }
            guard old, name.hasPrefix("audit_events_"), name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else { continue }
            try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE \(name)"), logger: logger)
            dropped.append(name)
        }
        var deleted = 0
        let rows = try await client.query("WITH d AS (DELETE FROM audit_events_default WHERE created_at < \(before) RETURNING 1) SELECT count(*) FROM d", logger: logger)
        for try await n in rows.decode(Int.self) { deleted = n }
        return (dropped.sorted(), deleted)
    }

    /// Creates this month's and the next months' partitions (idempotent; run at start-up).
    public func ensurePartitions(monthsAhead: Int = 2, logger: Logger) async throws {
        try await client.query("SELECT kb_ensure_audit_partitions((now() AT TIME ZONE 'UTC')::date, \(monthsAhead)::int)", logger: logger)
    }

    /// Rolls up the closed UTC days of the last `days` not rolled up yet into per-day usage counters (0016,
    /// `kb_roll_up_usage`), which `GET /v1/usage` reads instead of a month of audit rows; returns the days rolled up.
    @discardableResult
    public func rollUpUsage(days: Int = 35, logger: Logger) async throws -> Int {
        var rolled = 0
        for try await n in try await client.query("SELECT kb_roll_up_usage(\(days)::int)", logger: logger).decode(Int32.self) {
            rolled = Int(n)
        }
        return rolled
    }
}
