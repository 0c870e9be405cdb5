import Audit
import Foundation
import Logging
import PostgresNIO
import Storage
import XCTest

@testable import Proxy

/// The proxy's prepared statements are prepared once per connection with the types of their first bindings;
/// a NULL carries no type. On one connection, rows with every optional column empty and rows with every one
/// set must both go through, in either order, and read back as written.
final class LedgerStatementTests: XCTestCase {
    func testAuditRowsWithAndWithoutOptionalColumnsShareOneConnection() async throws {
        try await check(preparedStatements: true)
    }

    /// `KEYBRAKE_DB_PREPARED_STATEMENTS=off` (behind PgBouncer 1.18 in transaction mode): the same statements sent
    /// unnamed, whose NULL bindings carry no type either.
    func testAuditRowsWithAndWithoutOptionalColumnsAsUnnamedStatements() async throws {
        try await check(preparedStatements: false)
    }

    func check(preparedStatements: Bool) async throws {
        try await TestDatabase.migrate()
        var config = try TestDatabase.url.clientConfiguration(maxConnections: 1, minConnections: 1)
        config.options.connectTimeout = .seconds(5)
        let client = PostgresClient(configuration: config, backgroundLogger: Logger(label: "test.db"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            let ledger = SpendLedger(client: DatabasePool(fixed: client, preparedStatements: preparedStatements))
            let logs = LogCapture()
            let logger = logs.logger
            let tenant = "ten_stmt" + String(Int.random(in: 0..<1_000_000_000))

            var bare = AuditEvent(tenantId: tenant, vendor: "stripe", method: "GET", path: "/v1/customers")
            bare.decision = .denied
            var full = AuditEvent(tenantId: tenant, vendor: "stripe", method: "POST", path: "/v1/charges")
            full.keyId = "key_x"; full.keyLabel = "agent"; full.operation = "charges.create"; full.decision = .allowed
            full.errorCode = "none"; full.upstreamStatus = 200; full.amountMinor = 1234; full.currency = "usd"
            full.amountMicros = 12_340_000; full.idempotencyKey = "idem-1"; full.idempotencyAuto = true
            full.upstreamRequestId = "req_1"; full.runId = "run-1"; full.outcome = .settled; full.duplicateOf = "aud_a"
            full.resolves = "aud_b"; full.overheadUs = 321; full.upstreamUs = 654
            var bare2 = bare
            bare2.id = "aud_" + String(Int.random(in: 0..<1_000_000_000))
            var full2 = full
            full2.id = "aud_" + String(Int.random(in: 0..<1_000_000_000))

            // Audit-only path: NULLs first, then values, then NULLs again.
            for event in [bare, full, bare2] { try await ledger.finish(SpendLedger.Finish(audit: event, ownerId: event.id), logger: logger) }
            // Concurrent audit-only rows are inserted in batches (absent values travel as sentinels): same result.
            var batch: [AuditEvent] = []
            for i in 0..<40 {
                var e = i % 2 == 0 ? full : bare
                e.id = "aud_batch\(i)_" + String(Int.random(in: 0..<1_000_000_000))
                batch.append(e)
            }
            try await withThrowingTaskGroup(of: Void.self) { inserts in
                for e in batch { inserts.addTask { try await ledger.finish(SpendLedger.Finish(audit: e, ownerId: e.id), logger: logger) } }
                try await inserts.waitForAll()
            }
            // Money/records path (a drop scope makes it one): values first, then NULLs.
            for event in [full2, { var e = bare; e.id = "aud_" + String(Int.random(in: 0..<1_000_000_000)); return e }()] {
                var finish = SpendLedger.Finish(audit: event, ownerId: event.id)
                finish.dropScopes = ["idem:none"]
                try await ledger.finish(finish, logger: logger)
            }

            let rows = try await client.query("""
                SELECT id, upstream_status, amount_minor, overhead_us, idempotency_auto, outcome, run_id
                FROM audit_events WHERE tenant_id = \(tenant) ORDER BY id
                """, logger: logger)
            var read: [String: (Int?, Int64?, Int64?, Bool, String?, String?)] = [:]
            for try await r in rows.decode((String, Int?, Int64?, Int64?, Bool, String?, String?).self) { read[r.0] = (r.1, r.2, r.3, r.4, r.5, r.6) }
            XCTAssertEqual(read.count, 45)
            XCTAssertFalse(logs.text.contains("one by one"), "the batched statement itself worked: \(logs.text)")
            for event in [full, full2] + batch.enumerated().filter { $0.offset % 2 == 0 }.map(\.element) {
                let r = try XCTUnwrap(read[event.id])
                XCTAssertEqual(r.0, 200); XCTAssertEqual(r.1, 1234); XCTAssertEqual(r.2, 321); XCTAssertTrue(r.3)
                XCTAssertEqual(r.4, "settled"); XCTAssertEqual(r.5, "run-1")
            }
            for event in [bare, bare2] + batch.enumerated().filter { $0.offset % 2 == 1 }.map(\.element) {
                let r = try XCTUnwrap(read[event.id])
                XCTAssertNil(r.0); XCTAssertNil(r.1); XCTAssertNil(r.2); XCTAssertFalse(r.3); XCTAssertNil(r.4)
            }
        }
    }
}
