import Audit
import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// The money state of the data plane. Every call is one statement (see Migrations/0002): caps,
/// quota and key status are checked and reserved atomically in Postgres, across any number of replicas.
public struct SpendLedger: Sendable {
    let client: PostgresClient
    /// Audit-only rows that arrive while one such insert is in flight are inserted together (one statement, one
    /// commit). Each request still answers only after its own row is committed.
    let auditRows: Coalescer<Int, AuditRow, Void>

    struct AuditRow: Sendable {
        var event: AuditEvent
        var countUsageMonth: String?
        var logger: Logger
    }

    public init(client: PostgresClient) {
        self.client = client
        self.auditRows = Coalescer(maxBatch: 256) { rows, _ in
            if rows.count > 1 {
                do {
                    for try await _ in try await client.execute(AuditOnlyManyStatement(rows), logger: rows[0].logger) {}
                    return rows.map { _ in .success(()) }
                } catch {
                    // Nothing of the batch was committed; one row the database refuses must not cost the others theirs.
                    rows[0].logger.warning("batched audit insert failed; inserting one by one", metadata: ["rows": "\(rows.count)"])
                }
            }
            var outcomes: [Result<Void, any Error>] = []
            for row in rows {
                do {
                    for try await _ in try await client.execute(AuditOnlyStatement(event: row.event, countUsageMonth: row.countUsageMonth),
                                                                logger: row.logger) {}
                    outcomes.append(.success(()))
                } catch {
                    outcomes.append(.failure(error))
                }
            }
            return outcomes
        }
    }

    public enum ReserveResult: Sendable, Equatable {
        case ok
        /// Denial code from kb_reserve with the figures for its message.
        case denied(code: String, used: Int64, cap: Int64)
    }

    /// Reserves `amount` against the key's day and month and counts the request against the tenant's quota.
    /// `amount` 0 only counts the request (and re-checks the key's status). `pending` is the request's audit row,
    /// written in the same statement when money is reserved (before the request is forwarded).
    public func reserve(
        keyId: String, tenantId: String, amount: MicroUSD, day: String, month: String, usageMonth: String,
        freeQuota: Int, reservationId: String, pending: AuditEvent? = nil, logger: Logger
    ) async throws -> ReserveResult {
        let statement = ReserveStatement(keyId: keyId, tenantId: tenantId, amount: amount.micros, day: day, month: month,
                                         usageMonth: usageMonth, freeQuota: Int64(freeQuota), reservationId: reservationId,
                                         pending: amount > .zero ? pending : nil)
        for try await (result, used, cap) in try await client.execute(statement, logger: logger) {
            return result == "ok" ? .ok : .denied(code: result, used: used, cap: cap)
        }
        throw KeybrakeError.internalError
    }

    public enum BeginResult: Sendable, Equatable {
        /// Every scope claimed and the money reserved.
        case ok
        /// Another request holds some scope: nothing reserved; `claimed` are the scopes this request did get.
        case claimsPartial(claimed: Set<String>)
        /// The reserve was refused; the claims were given back.
        case denied(code: String, used: Int64, cap: Int64)

        /// A row of kb_begin / kb_begin_many.
        init(result: String, used: Int64, cap: Int64, claimed: [String]) {
            switch result {
            case "ok": self = .ok
            case "claims_partial": self = .claimsPartial(claimed: Set(claimed))
            default: self = .denied(code: result, used: used, cap: cap)
            }
        }
    }

    /// Claims one request's idempotency records and reserves its amount, in one statement (kb_begin; kb_claim
    /// orders the scopes).
    func begin(_ item: BeginBatcher.Item, key: BeginBatcher.Key) async throws -> BeginResult {
        // Postgres arrays of text cannot carry NULL through PostgresNIO's [String]: '' stands for "no upstream key".
        let claims = item.claims
        let statement = BeginStatement(
            tenantId: key.tenantId, ownerId: item.ownerId, scopes: claims.map(\.scope), hashes: claims.map(\.requestHash),
            upstreamKeys: claims.map { $0.upstreamKey ?? "" }, ttls: claims.map { Int32(clamping: $0.ttl.components.seconds) },
            keyId: key.keyId, amount: item.amount.micros, day: key.day, month: key.month, usageMonth: key.usageMonth,
            freeQuota: Int64(key.freeQuota), pending: item.pending)
        for try await (result, used, cap, claimed) in try await client.execute(statement, logger: item.logger) {
            return BeginResult(result: result, used: used, cap: cap, claimed: claimed)
        }
        throw KeybrakeError.internalError
    }

    public struct Finish: Sendable {
        public var audit: AuditEvent
        /// The request that holds the records and the reservation (the audit row's id, except for a late undo,
        /// whose own row resolves that request's).
        public var ownerId: String
        public var reservationId: String?
        public var outcome: String?          // settled | released | unknown
        public var actual: MicroUSD?
        public var completeScopes: [String] = []
        /// Seconds each completed record is kept from now (its window; an unknown outcome's: the idempotency TTL).
        public var completeWindows: [Int32] = []
        public var recordState: String = "completed"
        /// Records handed back to this earlier request, whose outcome stays unknown.
        public var restoreOwner: String?
        public var dropScopes: [String] = []
        public var response: StoredResponse?
        public var countedObject: String?
        /// UTC month (YYYY-MM-01) to count this request in, when no reserve step counted it.
        public var countUsageMonth: String?
        /// The request's reserve may have written its audit row (a reserve that finished after its deadline): this
        /// row completes that one instead of adding a second row with the same id.
        public var mayCompleteAWrittenRow = false

        public init(audit: AuditEvent, ownerId: String) {
            self.audit = audit
            self.ownerId = ownerId
        }

        /// Only the audit row (and maybe a request count) to write: no money, no idempotency records.
        var isAuditOnly: Bool { reservationId == nil && completeScopes.isEmpty && dropScopes.isEmpty && countedObject == nil }
    }

    /// Settles the reservation, writes (or completes) the audit row and completes idempotency records, atomically.
    public func finish(_ f: Finish, logger: Logger) async throws {
        if f.isAuditOnly && !f.mayCompleteAWrittenRow {
            try await auditRows.submit(AuditRow(event: f.audit, countUsageMonth: f.countUsageMonth, logger: logger), lane: 0)
            return
        }
        // The response is kept only in the idempotency records this request completes.
        let stored = f.completeScopes.isEmpty ? nil : f.response
        let statement = FinishStatement(
            event: f.audit, ownerId: f.ownerId, reservationId: f.reservationId, outcome: f.outcome, actual: f.actual?.micros,
            completeScopes: f.completeScopes, completeWindows: f.completeWindows, recordState: f.recordState,
            restoreOwner: f.restoreOwner, dropScopes: f.dropScopes,
            status: stored.map { Int64($0.status) }, headersJSON: stored.map { Self.headersJSON($0.headers) },
            body: stored.map { ByteBuffer(bytes: $0.body) }, countedObject: f.countedObject, countUsageMonth: f.countUsageMonth)
        for try await _ in try await client.execute(statement, logger: logger) {}
    }

    /// The replayable headers as a JSON object (first value of a repeated name wins). By hand: JSONSerialization
    /// showed in the charge profile, and this is a flat object of strings.
    static func headersJSON(_ headers: [(String, String)]) -> String {
        var seen = Set<String>()
        var out = "{"
        for (name, value) in headers where seen.insert(name).inserted {
            if out.count > 1 { out += "," }
            out += AuditEvent.quoted(name) + ":" + AuditEvent.quoted(value)
        }
        return out + "}"
    }

    /// kb_begin for several requests on one key, in order, in one statement (see BeginBatcher); one result each.
    func beginMany(_ items: [BeginBatcher.Item], key: BeginBatcher.Key, logger: Logger) async throws -> [BeginResult] {
        var statement = BeginManyStatement(tenantId: key.tenantId, keyId: key.keyId, day: key.day, month: key.month,
                                           usageMonth: key.usageMonth, freeQuota: Int64(key.freeQuota))
        for (index, item) in items.enumerated() {
            statement.ownerIds.append(item.ownerId)
            statement.amounts.append(item.amount.micros)
            for claim in item.claims {
                statement.scopeItems.append(Int32(index + 1))
                statement.scopes.append(claim.scope)
                statement.hashes.append(claim.requestHash)
                statement.upstreamKeys.append(claim.upstreamKey ?? "")
                statement.ttls.append(Int32(clamping: claim.ttl.components.seconds))
            }
        }
        statement.pending = AuditArrays(items.map { ($0.pending, nil) })
        var results = [BeginResult?](repeating: nil, count: items.count)
        for try await (item, result, used, cap, claimed) in try await client.execute(statement, logger: logger) {
            let index = Int(item) - 1
            guard results.indices.contains(index) else { throw KeybrakeError.internalError }
            results[index] = BeginResult(result: result, used: used, cap: cap, claimed: claimed)
        }
        return try results.map { r in
            guard let r else { throw KeybrakeError.internalError }
            return r
        }
    }

    /// Turns in-flight records whose lease ran out into unknown outcomes (kb_expire_leases); returns how many held
    /// reservations it expired.
    public func expireLeases(limit: Int = 500, logger: Logger) async throws -> Int {
        for try await n in try await client.query("SELECT kb_expire_leases(\(Int32(limit)))", logger: logger).decode(Int32.self) {
            return Int(n)
        }
        return 0
    }

    /// What Keybrake already counted for a PaymentIntent or charge (its create with `confirm=true`, an earlier capture).
    public func countedFor(tenantId: String, vendor: String, objectId: String, logger: Logger) async throws -> MicroUSD {
        let rows = try await client.query("""
            SELECT counted_micros FROM priced_objects WHERE tenant_id = \(tenantId) AND vendor = \(vendor) AND object_id = \(objectId)
            """, logger: logger)
        for try await counted in rows.decode(Int64.self) { return MicroUSD(counted) }
        return .zero
    }
}

/// A response kept for idempotent replay: status, the headers worth replaying, body.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (a: StoredResponse, b: StoredResponse) -> Bool {
        a.status == b.status && a.body == b.body && a.headers.map { $0.0 + ":" + $0.1 } == b.headers.map { $0.0 + ":" + $0.1 }
    }
}

// MARK: - Prepared statements (the hot path: parsed and planned once per connection, not per request)

struct ReserveStatement: PostgresPreparedStatement {
    static let name = "kb_ReserveStatement"
    /// A request that reserves money has its audit row written here, before it is forwarded (completed at settle).
    static let sql = """
        WITH r AS (SELECT result, used, cap FROM kb_reserve($1, $2, $3, $4::date, $5::date, $6::date, $7, $8)),
             pending AS (INSERT INTO audit_events (\(AuditColumns.names)) SELECT \(AuditColumns.placeholders(from: 9))
                         FROM r WHERE r.result = 'ok' AND $3 > 0 AND $9 IS NOT NULL)
        SELECT result, used, cap FROM r
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .text, .int8, .text, .text, .text, .int8, .text] + AuditColumns.types
    typealias Row = (String, Int64, Int64)
    var keyId: String, tenantId: String, amount: Int64, day: String, month: String, usageMonth: String, freeQuota: Int64, reservationId: String
    var pending: AuditEvent?

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 31)
        b.append(keyId); b.append(tenantId); b.append(amount); b.append(day); b.append(month); b.append(usageMonth)
        b.append(freeQuota); b.append(reservationId)
        if let pending { AuditColumns.bind(pending, into: &b) } else { AuditColumns.bindAbsent(into: &b) }
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

struct BeginStatement: PostgresPreparedStatement {
    static let name = "kb_BeginStatement"
    /// Claims, reserve and the request's audit row (written before it is forwarded; completed at settle), one commit.
    static let sql = """
        WITH b AS (SELECT result, used, cap, claimed FROM kb_begin($1, $2, $3::text[], $4::text[], $5::text[], $6::int[],
                       $7, $8, $9::date, $10::date, $11::date, $12)),
             pending AS (INSERT INTO audit_events (\(AuditColumns.names)) SELECT \(AuditColumns.placeholders(from: 13))
                         FROM b WHERE b.result = 'ok')
        SELECT result, used, cap, claimed FROM b
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .text, .textArray, .textArray, .textArray, .int4Array,
                                                       .text, .int8, .text, .text, .text, .int8] + AuditColumns.types
    typealias Row = (String, Int64, Int64, [String])
    var tenantId: String, ownerId: String, scopes: [String], hashes: [String], upstreamKeys: [String], ttls: [Int32]
    var keyId: String, amount: Int64, day: String, month: String, usageMonth: String, freeQuota: Int64
    var pending: AuditEvent

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 35)
        b.append(tenantId); b.append(ownerId); b.append(scopes); b.append(hashes); b.append(upstreamKeys); b.append(ttls)
        b.append(keyId); b.append(amount); b.append(day); b.append(month); b.append(usageMonth); b.append(freeQuota)
        AuditColumns.bind(pending, into: &b)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

struct BeginManyStatement: PostgresPreparedStatement {
    static let name = "kb_BeginManyStatement"
    /// The items that reserved have their audit rows written here, before they are forwarded.
    static let sql = """
        WITH b AS (SELECT item, result, used, cap, claimed FROM kb_begin_many($1, $2::text[], $3::bigint[], $4::int[], $5::text[],
                       $6::text[], $7::text[], $8::int[], $9, $10::date, $11::date, $12::date, $13)),
             r AS (SELECT * FROM \(AuditArrays.unnest(from: 14))),
             pending AS (INSERT INTO audit_events (\(AuditColumns.names))
                         SELECT \(AuditArrays.selectList) FROM r JOIN b ON b.item = r.ord WHERE b.result = 'ok')
        SELECT item, result, used, cap, claimed FROM b
        """
    typealias Row = (Int32, String, Int64, Int64, [String])
    var pending = AuditArrays([])
    var tenantId: String
    var ownerIds: [String] = [], amounts: [Int64] = []
    var scopeItems: [Int32] = [], scopes: [String] = [], hashes: [String] = [], upstreamKeys: [String] = [], ttls: [Int32] = []
    var keyId: String, day: String, month: String, usageMonth: String, freeQuota: Int64

    init(tenantId: String, keyId: String, day: String, month: String, usageMonth: String, freeQuota: Int64) {
        self.tenantId = tenantId
        self.keyId = keyId
        self.day = day
        self.month = month
        self.usageMonth = usageMonth
        self.freeQuota = freeQuota
    }

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 37)
        b.append(tenantId); b.append(ownerIds); b.append(amounts); b.append(scopeItems); b.append(scopes); b.append(hashes)
        b.append(upstreamKeys); b.append(ttls); b.append(keyId); b.append(day); b.append(month); b.append(usageMonth); b.append(freeQuota)
        pending.bind(into: &b)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// A request that moved money or holds idempotency records: its audit row and kb_finish_records in one statement
/// (one transaction, committed with fsync).
struct FinishStatement: PostgresPreparedStatement {
    static let name = "kb_FinishStatement"
    static let sql = """
        WITH written AS (UPDATE audit_events SET \(AuditColumns.assignments)
                         WHERE id = $1 AND tenant_id = $2 AND error_code = '\(AuditColumns.inFlight)' RETURNING 1),
             audit AS (INSERT INTO audit_events (\(AuditColumns.names)) SELECT \(AuditColumns.values)
                       WHERE NOT EXISTS (SELECT 1 FROM written))
        SELECT kb_finish_records($2, $24, $5, $25, $26, $27, $28, $29::int[], $30, $31, $32, $33::int, $34::jsonb, $35, $36, $37::date)
        """
    static let bindingDataTypes: [PostgresDataType] = AuditColumns.types + [
        .text, .text, .text, .int8, .textArray, .int4Array, .text, .text, .textArray, .int8, .text, .bytea, .text, .text,
    ]
    typealias Row = Void
    var event: AuditEvent
    var ownerId: String
    var reservationId: String?, outcome: String?, actual: Int64?
    var completeScopes: [String], completeWindows: [Int32], recordState: String, restoreOwner: String?, dropScopes: [String]
    var status: Int64?, headersJSON: String?, body: ByteBuffer?, countedObject: String?, countUsageMonth: String?

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 37)
        AuditColumns.bind(event, into: &b)
        b.append(ownerId); b.append(reservationId); b.append(outcome); b.append(actual); b.append(completeScopes)
        b.append(completeWindows); b.append(recordState); b.append(restoreOwner); b.append(dropScopes); b.append(status)
        b.append(headersJSON); b.append(body); b.append(countedObject); b.append(countUsageMonth)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { () }
}

/// The audit row of a request that moved no money and holds no idempotency records (most GETs, and denials
/// before any claim): a typed INSERT, committed without waiting for fsync (DESIGN §12), plus the request count
/// of a tenant without a quota.
struct AuditOnlyStatement: PostgresPreparedStatement {
    static let name = "kb_AuditOnlyStatement"
    static let sql = """
        WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
             counted AS (INSERT INTO tenant_monthly_usage (tenant_id, month, shard, requests)
                         SELECT $2, $24::date, floor(random() * 16)::smallint, 1 WHERE $24::date IS NOT NULL
                         ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = tenant_monthly_usage.requests + 1)
        INSERT INTO audit_events (\(AuditColumns.names))
        SELECT \(AuditColumns.values) FROM relaxed
        """
    static let bindingDataTypes: [PostgresDataType] = AuditColumns.types + [.text]   // + usage month
    typealias Row = Void
    var event: AuditEvent
    var countUsageMonth: String?

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 24)
        AuditColumns.bind(event, into: &b)
        b.append(countUsageMonth)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { () }
}

/// Audit rows as 24 parallel arrays (the 23 columns and a usage month), for statements that insert many rows at
/// once. Arrays cannot carry NULL through PostgresNIO, so absent values travel as '' (text) and Int64.min (numbers)
/// and `selectList` turns them back into NULL.
struct AuditArrays: Sendable {
    var columns: [[String]] = Array(repeating: [], count: 24)   // text columns by position (others unused)
    var ints: [Int: [Int64]] = [:]
    var flags: [Bool] = []

    init(_ rows: [(event: AuditEvent, usageMonth: String?)]) {
        for (e, usageMonth) in rows {
            let texts: [(Int, String?)] = [(0, e.id), (1, e.tenantId), (2, e.keyId), (3, e.keyLabel), (4, e.vendor), (5, e.method),
                                            (6, e.path), (7, e.operation), (8, e.decision.rawValue), (9, e.errorCode), (12, e.currency),
                                            (14, e.idempotencyKey), (16, e.upstreamRequestId), (17, e.runId), (18, e.outcome?.rawValue),
                                            (19, e.duplicateOf), (20, e.resolves), (23, usageMonth)]
            for (i, v) in texts { columns[i].append(v ?? "") }
            let numbers: [(Int, Int64?)] = [(10, e.upstreamStatus.map(Int64.init)), (11, e.amountMinor), (13, e.amountMicros),
                                            (21, e.overheadUs), (22, e.upstreamUs)]
            for (i, v) in numbers { ints[i, default: []].append(v ?? Int64.min) }
            flags.append(e.idempotencyAuto)
        }
    }

    func bind(into b: inout PostgresBindings) {
        for i in 0..<24 {
            if let numbers = ints[i] { b.append(numbers) } else if i == 15 { b.append(flags) } else { b.append(columns[i]) }
        }
    }

    /// `unnest(...) AS r(...)` over the arrays bound from `$first`.
    static func unnest(from first: Int) -> String {
        let types = ["text", "text", "text", "text", "text", "text", "text", "text", "text", "text", "int8", "int8", "text", "int8",
                     "text", "bool", "text", "text", "text", "text", "text", "int8", "int8", "text"]
        let arrays = types.enumerated().map { "$\(first + $0.offset)::\($0.element)[]" }.joined(separator: ", ")
        return """
            unnest(\(arrays)) WITH ORDINALITY
            AS r(id, tenant_id, key_id, key_label, vendor, method, path, operation, decision, error_code, upstream_status,
                 amount_minor, currency, amount_micros, idempotency_key, idempotency_auto, upstream_request_id, run_id,
                 outcome, duplicate_of, resolves, overhead_us, upstream_us, usage_month, ord)
            """
    }

    /// The audit columns' values from `r`, NULLs restored, in `AuditColumns.names` order.
    static let selectList = """
        r.id, r.tenant_id, NULLIF(r.key_id, ''), NULLIF(r.key_label, ''), r.vendor, r.method, r.path, NULLIF(r.operation, ''), r.decision,
        NULLIF(r.error_code, ''), NULLIF(r.upstream_status, \(Int64.min))::int, NULLIF(r.amount_minor, \(Int64.min)),
        NULLIF(r.currency, ''), r.amount_micros, NULLIF(r.idempotency_key, ''), r.idempotency_auto, NULLIF(r.upstream_request_id, ''),
        NULLIF(r.run_id, ''), NULLIF(r.outcome, ''), NULLIF(r.duplicate_of, ''), NULLIF(r.resolves, ''),
        NULLIF(r.overhead_us, \(Int64.min)), NULLIF(r.upstream_us, \(Int64.min)), now()
        """
}

/// Several audit-only rows in one statement (see `SpendLedger.auditRows`).
struct AuditOnlyManyStatement: PostgresPreparedStatement {
    static let name = "kb_AuditOnlyManyStatement"
    static let sql = """
        WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
             r AS (SELECT * FROM \(AuditArrays.unnest(from: 1))),
             counted AS (INSERT INTO tenant_monthly_usage (tenant_id, month, shard, requests)
                         SELECT tenant_id, usage_month::date, (txid_current() % 16)::smallint, count(*) FROM r
                         WHERE usage_month <> '' GROUP BY tenant_id, usage_month
                         ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = tenant_monthly_usage.requests + EXCLUDED.requests)
        INSERT INTO audit_events (\(AuditColumns.names))
        SELECT \(AuditArrays.selectList)
        FROM r, relaxed
        """
    typealias Row = Void
    let arrays: AuditArrays

    init(_ rows: [SpendLedger.AuditRow]) { arrays = AuditArrays(rows.map { ($0.event, $0.countUsageMonth) }) }

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 24)
        arrays.bind(into: &b)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { () }
}
