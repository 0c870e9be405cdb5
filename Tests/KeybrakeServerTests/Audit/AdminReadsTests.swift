import Foundation
import HummingbirdTesting
import Logging
import PostgresNIO
import Storage
import XCTest

/// Admin reads cannot drain the data plane (DESIGN §16): their own pool, a statement timeout, a per-tenant limit,
/// and audit filters that are indexed or bounded by a window.
final class AdminReadsTests: XCTestCase {
    /// Holds an ACCESS EXCLUSIVE lock on `table` from a connection of its own while `body` runs: every read of the
    /// table waits for it, as a read walking a big history would.
    static func holdingLock<T: Sendable>(on table: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await TestDatabase.withClient { db in
            try await db.withTransaction(logger: Logger(label: "t")) { conn in
                try await conn.query(PostgresQuery(unsafeSQL: "LOCK TABLE \(table) IN ACCESS EXCLUSIVE MODE"), logger: Logger(label: "t"))
                return try await body()
            }
        }
    }

    func testReadPastTheStatementTimeoutIs503QueryTimeout() async throws {
        try await TestApp.run({ $0.adminReads.statementTimeout = .milliseconds(300) }) { client in
            let (_, admin) = try await client.signup()
            let started = ContinuousClock.now
            let r = try await Self.holdingLock(on: "audit_events") { try await client.call(.get, "/v1/audit?error_code=zz", token: admin) }
            XCTAssertEqual(r.status, .serviceUnavailable, r.text)
            XCTAssertEqual(r.errorCode, "query_timeout")
            XCTAssertTrue(((r.json["error"] as? [String: Any])?["message"] as? String ?? "").contains("time window"), r.text)
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(3), "the read is stopped at its timeout, not when the lock goes")
        }
    }

    func testStatementTimeoutMapsToQueryTimeout() async throws {
        try await TestDatabase.withClient { db in
            var settings = AdminReads.Settings()
            settings.statementTimeout = .milliseconds(50)
            let reads = AdminReads(client: DatabasePool(fixed: db), settings: settings)
            do {
                _ = try await reads.rows("SELECT pg_sleep(2)", tenantId: "ten_x", logger: Logger(label: "t"))
                XCTFail("pg_sleep(2) should have been stopped")
            } catch {
                let mapped = DatabaseErrors.map(error, logger: Logger(label: "t"))
                XCTAssertEqual(mapped.status, 503)
                XCTAssertEqual(mapped.code, "query_timeout")
            }
            XCTAssertEqual(reads.inFlight(tenantId: "ten_x"), 0, "the slot is given back")
        }
    }

    func testReadsPastTheTenantLimitAre429AndOtherTenantsAreServed() async throws {
        try await TestApp.run({ $0.adminReads.perTenant = 1; $0.adminReads.maxConnections = 4 }) { client in
            let (_, a) = try await client.signup(name: "A")
            let (_, b) = try await client.signup(name: "B")
            // The held read answers once the lock is gone: awaited after it, not under it.
            let slow = try await Self.holdingLock(on: "audit_events") {
                let slow = Task { try await client.call(.get, "/v1/audit", token: a) }
                try await Task.sleep(for: .milliseconds(400))
                let refused = try await client.call(.get, "/v1/keys", token: a)
                XCTAssertEqual(refused.status, .tooManyRequests, refused.text)
                XCTAssertEqual(refused.errorCode, "too_many_reads")
                XCTAssertEqual(refused.headers[.retryAfter], "1")
                expectStatus(try await client.call(.get, "/v1/keys", token: b), .ok, "another tenant's reads are its own")
                return slow
            }
            expectStatus(try await slow.value, .ok)
            expectStatus(try await client.call(.get, "/v1/keys", token: a), .ok, "the slot is back once the read answered")
        }
    }

    /// A tenant's reads past its limit wait their turn (a flood is slowed, not answered as fast as it asks), and one
    /// that waits longer than the bound is refused.
    func testReadsPastTheTenantLimitWaitThenAnswerOrAre429AfterTheWait() async throws {
        try await TestApp.run({ $0.adminReads.perTenant = 1; $0.adminReads.maxWait = .milliseconds(1_500) }) { client in
            let (_, a) = try await client.signup(name: "A")
            let (slow, waiting) = try await Self.holdingLock(on: "audit_events") {
                let slow = Task { try await client.call(.get, "/v1/audit", token: a) }
                try await Task.sleep(for: .milliseconds(300))
                let waiting = Task { try await client.call(.get, "/v1/keys", token: a) }
                try await Task.sleep(for: .milliseconds(300))
                return (slow, waiting)
            }
            expectStatus(try await slow.value, .ok)
            expectStatus(try await waiting.value, .ok, "the second read waited for the first and was then served")
            // Held past the wait: refused.
            let started = ContinuousClock.now
            let (held, refused) = try await Self.holdingLock(on: "audit_events") {
                let held = Task { try await client.call(.get, "/v1/audit", token: a) }
                try await Task.sleep(for: .milliseconds(300))
                return (held, try await client.call(.get, "/v1/keys", token: a))
            }
            expectStatus(try await held.value, .ok)
            XCTAssertEqual(refused.status, .tooManyRequests, refused.text)
            XCTAssertEqual(refused.errorCode, "too_many_reads")
            XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(1_500), "refused after its wait, not at once")
        }
    }

    func testProxiedRequestIsServedWhileTheAdminPoolIsHeld() async throws {
        let harness = try await ProxyHarness.start()
        defer { harness.fake.stop() }
        try await harness.run({
            $0.adminReads.maxConnections = 1; $0.adminReads.perTenant = 4; $0.adminReads.statementTimeout = .seconds(20)
            $0.adminReads.maxWait = .seconds(20)
        }) { client in
            let a = try await client.tenantWithCredentials()
            let b = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(b, ["allowed_endpoints": ["GET /v1/customers/*"]])
            // An old month's partition, locked: A's reads of that month wait on it (as a long walk would), while the
            // data plane writes this month's rows and reads nothing of it.
            try await TestDatabase.withClient { db in
                try await db.query("SELECT kb_ensure_audit_partitions(DATE '2020-01-01', 0)", logger: Logger(label: "t"))
            }
            let began = ContinuousClock.now
            let flood = try await Self.holdingLock(on: "audit_events_2020_01") {
                // A's audit reads of January 2020 hold the admin pool's only connection and queue behind it.
                let flood = (0..<4).map { _ in
                    Task { try await client.call(.get, "/v1/audit?from=2020-01-01T00:00:00Z&to=2020-01-20T00:00:00Z", token: a.admin) }
                }
                try await Task.sleep(for: .milliseconds(400))
                for _ in 0..<5 {
                    let r = try await client.proxy(.get, "/stripe/v1/customers/cus_1", key: token)
                    // The fake vendor's own answer (it has no such customer): forwarded and audited, not 503.
                    XCTAssertEqual(r.status, .notFound, r.text)
                }
                return flood
            }
            for t in flood { expectStatus(try await t.value, .ok, "A's reads answer once the lock is gone") }
            XCTAssertGreaterThanOrEqual(ContinuousClock.now - began, .milliseconds(400), "A's reads waited on the lock (held the admin pool)")
        }
    }

    func testUnindexedFilterWithoutAWindowIs400() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            var r = try await client.call(.get, "/v1/audit?decision=allowed", token: admin)
            XCTAssertEqual(r.status, .badRequest, r.text)
            XCTAssertEqual(r.errorCode, "invalid_request")
            XCTAssertEqual(r.errorField, "from")
            r = try await client.call(.get, "/v1/audit?decision=allowed&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", token: admin)
            XCTAssertEqual(r.status, .badRequest, r.text)
            XCTAssertEqual(r.errorField, "to")
            r = try await client.call(.get, "/v1/audit?from=2026-03-01T00:00:00Z&to=2026-01-01T00:00:00Z", token: admin)
            XCTAssertEqual(r.errorField, "to")
            expectStatus(try await client.call(.get, "/v1/audit?decision=allowed&from=2026-01-01T00:00:00Z&to=2026-01-20T00:00:00Z", token: admin), .ok)
            expectStatus(try await client.call(.get, "/v1/audit?decision=allowed&vendor=stripe", token: admin), .ok)
            // The other expected values are in no index either (Migrations/0014): the same rule.
            for expected in ["status=200", "status=204", "outcome=settled", "state=in_flight"] {
                r = try await client.call(.get, "/v1/audit?\(expected)", token: admin)
                XCTAssertEqual(r.status, .badRequest, expected)
                XCTAssertEqual(r.errorField, "from", expected)
                expectStatus(try await client.call(.get, "/v1/audit?\(expected)&from=2026-01-01T00:00:00Z&to=2026-01-20T00:00:00Z", token: admin), .ok, expected)
                expectStatus(try await client.call(.get, "/v1/audit?\(expected)&key_id=key_x", token: admin), .ok, expected)
            }
            for indexed in ["error_code=zz", "error_code=in_flight", "state=lease_expired", "vendor=twilio", "decision=denied", "status=402", "status=500",
                            "outcome=outcome_unknown", "outcome=released", "key_id=key_x", "run_id=r"] {
                expectStatus(try await client.call(.get, "/v1/audit?\(indexed)", token: admin), .ok, indexed)
            }
        }
    }
}
