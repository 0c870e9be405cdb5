// The spend ledger's prepared statements: parsed and planned once per connection, not per request.
import Audit
import Foundation
import KeybrakeCore
import PostgresNIO

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
        var b = PostgresBindings(capacity: 8 + AuditColumns.count)
        b.append(keyId); b.append(tenantId); b.append(amount); b.append(day); b.append(month); b.append(usageMonth)
        b.append(freeQuota); b.append(reservationId)
        if let pending { AuditColumns.bind(pending, into: &b) } else { AuditColumns.bindAbsent(into: &b) }
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

struct ClaimAndReserveStatement: PostgresPreparedStatement {
    static let name = "kb_ClaimAndReserveStatement"
    /// Claims, reserve and the request's audit row (written before it is forwarded; completed at settle), one commit.
    static let sql = """
        WITH b AS (SELECT result, used, cap, claimed FROM kb_claim_and_reserve($1, $2, $3::text[], $4::text[], $5::text[], $6::int[],
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
        var b = PostgresBindings(capacity: 12 + AuditColumns.count)
        b.append(tenantId); b.append(ownerId); b.append(scopes); b.append(hashes); b.append(upstreamKeys); b.append(ttls)
        b.append(keyId); b.append(amount); b.append(day); b.append(month); b.append(usageMonth); b.append(freeQuota)
        AuditColumns.bind(pending, into: &b)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

struct ClaimAndReserveManyStatement: PostgresPreparedStatement {
    static let name = "kb_ClaimAndReserveManyStatement"
    /// The items that reserved have their audit rows written here, before they are forwarded.
    static let sql = """
        WITH b AS (SELECT item, result, used, cap, claimed FROM kb_claim_and_reserve_many($1, $2::text[], $3::bigint[], $4::int[], $5::text[],
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
        var b = PostgresBindings(capacity: 13 + AuditArrays.parameterCount)
        b.append(tenantId); b.append(ownerIds); b.append(amounts); b.append(scopeItems); b.append(scopes); b.append(hashes)
        b.append(upstreamKeys); b.append(ttls); b.append(keyId); b.append(day); b.append(month); b.append(usageMonth); b.append(freeQuota)
        pending.bind(into: &b)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// A request that moved money or holds idempotency records: its audit row and kb_finish_records in one statement
/// (one transaction, committed with fsync). The row written when the request reserved (state in_flight, or lease_expired
/// if its lease ran out while it was still alive) is completed; otherwise the row is inserted here.
struct FinishStatement: PostgresPreparedStatement {
    static let name = "kb_FinishStatement"
    /// The audit columns are bound first (`AuditColumns.values`), then kb_finish_records' own parameters.
    static let sql: String = {
        let own = (1...14).map { "$\(AuditColumns.count + $0)" }
        let id = AuditColumns.placeholder("id"), tenant = AuditColumns.placeholder("tenant_id"), vendor = AuditColumns.placeholder("vendor")
        return """
            WITH written AS (UPDATE audit_events SET \(AuditColumns.assignments)
                             WHERE id = \(id) AND tenant_id = \(tenant) AND state IN ('in_flight', 'lease_expired') RETURNING 1),
                 audit AS (INSERT INTO audit_events (\(AuditColumns.names)) SELECT \(AuditColumns.values)
                           WHERE NOT EXISTS (SELECT 1 FROM written))
            SELECT kb_finish_records(\(tenant), \(own[0]), \(vendor), \(own[1]), \(own[2]), \(own[3]), \(own[4]), \(own[5])::int[], \(own[6]),
                                     \(own[7]), \(own[8]), \(own[9])::int, \(own[10])::jsonb, \(own[11]), \(own[12]), \(own[13])::date)
            """
    }()
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
        var b = PostgresBindings(capacity: AuditColumns.count + 14)
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
    static let sql: String = {
        let month = "$\(AuditColumns.count + 1)::date"
        return """
            WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
                 counted AS (INSERT INTO tenant_monthly_usage (tenant_id, month, shard, requests)
                             SELECT \(AuditColumns.placeholder("tenant_id")), \(month), floor(random() * 16)::smallint, 1 WHERE \(month) IS NOT NULL
                             ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = tenant_monthly_usage.requests + 1)
            INSERT INTO audit_events (\(AuditColumns.names))
            SELECT \(AuditColumns.values) FROM relaxed
            """
    }()
    static let bindingDataTypes: [PostgresDataType] = AuditColumns.types + [.text]   // + usage month
    typealias Row = Void
    var event: AuditEvent
    var countUsageMonth: String?

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: AuditColumns.count + 1)
        AuditColumns.bind(event, into: &b)
        b.append(countUsageMonth)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { () }
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
        var b = PostgresBindings(capacity: AuditArrays.parameterCount)
        arrays.bind(into: &b)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { () }
}

/// Completes audit rows written before their requests were forwarded (`SpendLedger.auditEarly`): the answer's fields,
/// many rows in one statement. Only rows still marked in flight change; the time bound lets Postgres skip older
/// monthly partitions (the rows were written moments ago).
struct AuditCompleteManyStatement: PostgresPreparedStatement {
    static let name = "kb_AuditCompleteManyStatement"
    static let sql = """
        WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
             r AS (SELECT * FROM \(AuditArrays.unnest(from: 1)))
        UPDATE audit_events a SET \(AuditArrays.completions)
        FROM r, relaxed
        WHERE a.id = r.id AND a.tenant_id = r.tenant_id AND a.state = 'in_flight'
          AND a.created_at > now() - interval '1 hour'
        """
    typealias Row = Void
    let arrays: AuditArrays

    init(_ rows: [SpendLedger.AuditRow]) { arrays = AuditArrays(rows.map { ($0.event, nil) }) }

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: AuditArrays.parameterCount)
        arrays.bind(into: &b)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { () }
}
