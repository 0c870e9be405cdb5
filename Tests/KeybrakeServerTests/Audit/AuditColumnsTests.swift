import Foundation
import PostgresNIO
@testable import Audit
@testable import Proxy
import XCTest

/// The audit column registry and what is derived from it stay in step: every statement binds exactly the parameters
/// its SQL names, the insert lists as many values as columns, the CSV header is the registry's, and the registry is
/// the table.
final class AuditColumnsTests: XCTestCase {
    /// The `$n` a statement's SQL names, as a set.
    static func placeholders(_ sql: String) -> Set<Int> {
        let regex = try! NSRegularExpression(pattern: #"\$([0-9]+)"#)
        return Set(regex.matches(in: sql, range: NSRange(sql.startIndex..., in: sql)).map { m in
            Int(sql[Range(m.range(at: 1), in: sql)!])!
        })
    }

    static func check<S: PostgresPreparedStatement>(_ statement: S, file: StaticString = #filePath, line: UInt = #line) throws {
        let bound = try statement.makeBindings().count
        XCTAssertEqual(placeholders(S.sql), Set(1...bound), "\(S.name): its SQL names $1…$\(bound), each once at least", file: file, line: line)
        if !S.bindingDataTypes.isEmpty {
            XCTAssertEqual(S.bindingDataTypes.count, bound, "\(S.name): a type per binding", file: file, line: line)
        }
    }

    func testEveryStatementBindsWhatItsSQLNames() throws {
        var event = AuditEvent(tenantId: "ten_1", vendor: "stripe", method: "POST", path: "/v1/charges")
        event.upstreamStatus = 200
        try Self.check(ReserveStatement(keyId: "key_1", tenantId: "ten_1", amount: 1, day: "d", month: "m", usageMonth: "u",
                                        freeQuota: 0, reservationId: "r", pending: event))
        try Self.check(ReserveStatement(keyId: "key_1", tenantId: "ten_1", amount: 1, day: "d", month: "m", usageMonth: "u",
                                        freeQuota: 0, reservationId: "r", pending: nil))
        try Self.check(ClaimAndReserveStatement(tenantId: "ten_1", ownerId: "o", scopes: [], hashes: [], upstreamKeys: [], ttls: [],
                                      keyId: "key_1", amount: 1, day: "d", month: "m", usageMonth: "u", freeQuota: 0, pending: event))
        var many = ClaimAndReserveManyStatement(tenantId: "ten_1", keyId: "key_1", day: "d", month: "m", usageMonth: "u", freeQuota: 0)
        many.pending = AuditArrays([(event, nil)])
        try Self.check(many)
        try Self.check(FinishStatement(event: event, ownerId: "o", completeScopes: [], completeWindows: [], recordState: "completed", restoreOwner: nil,
                                       dropScopes: []))
        try Self.check(AuditOnlyStatement(event: event, countUsageMonth: nil))
        try Self.check(AuditOnlyManyStatement([]))
        try Self.check(AuditCompleteManyStatement([]))
    }

    func testInsertListsAValuePerColumn() {
        let names = AuditColumns.names.split(separator: ",")
        XCTAssertEqual(AuditColumns.values.split(separator: ",").count, names.count)
        XCTAssertEqual(AuditArrays.selectList.components(separatedBy: "r.").count - 1, AuditColumns.count, "a value from r per bound column")
        XCTAssertEqual(AuditArrays.selectList.components(separatedBy: "now()").count - 1, 1, "and created_at")
        XCTAssertEqual(AuditColumns.types.count, AuditColumns.count)
        XCTAssertEqual(Self.placeholders(AuditColumns.values), Set(1...AuditColumns.count))
        XCTAssertEqual(Self.placeholders(AuditColumns.assignments).count, AuditColumns.count - 2, "all but id and tenant_id")
    }

    /// The CSV header is the registry's read columns (amount in dollars), and a row has a cell per header name.
    func testCSVHeaderIsTheRegistrysColumns() {
        let expected = AuditColumns.all.filter { $0.selected != nil }.map { $0.name == "amount_micros" ? "amount_usd" : $0.name }
        XCTAssertEqual(CSV.header, expected)
        XCTAssertEqual(Array(CSV.header.prefix(3)), ["id", "created_at", "key_id"], "the export's first columns, as documented")
        XCTAssertEqual(AuditRecord().csvCells.count, CSV.header.count)
        let firstLine = CSV.render([]).split(separator: "\r\n").first.map(String.init)
        XCTAssertEqual(firstLine, CSV.header.joined(separator: ","))
    }

    /// The registry is the table: every stored column of audit_events is listed (written, or read only), and every
    /// listed column but the key's parent chain is one of the table's.
    func testRegistryListsEveryColumnOfTheTable() async throws {
        try await TestDatabase.migrate()
        let table = try await TestDatabase.withClient { db in
            var names: [String] = []
            for try await name in try await db.query("""
                SELECT attname::text FROM pg_attribute
                WHERE attrelid = 'audit_events'::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
                """).decode(String.self) { names.append(name) }
            return names
        }
        let listed = AuditColumns.all.map(\.name).filter { $0 != "parent_key_ids" }
        XCTAssertEqual(Set(listed), Set(table))
        XCTAssertEqual(listed.count, Set(listed).count, "each column once")
    }
}
