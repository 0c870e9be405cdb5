import Foundation
import HummingbirdTesting
import Logging
import PostgresNIO
import XCTest

/// One tenant cannot hurt another on the data plane (DESIGN §16): fair admission per tenant, and refusals that
/// are cheap (decided from memory) but each audited before it is answered.
final class ProxyFairnessTests: XCTestCase {
    /// Holds `tenant`'s request counter for this month locked (FOR UPDATE) while `body` runs: a request of the
    /// tenant that reaches its reserve statement waits there, holding its admission seat.
    static func holdingUsageRow<T: Sendable>(of tenant: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await TestDatabase.withClient { db in
            try await db.query("""
                INSERT INTO tenant_monthly_usage (tenant_id, month) VALUES (\(tenant), date_trunc('month', now() AT TIME ZONE 'UTC')::date)
                ON CONFLICT DO NOTHING
                """, logger: Logger(label: "t"))
            return try await db.withTransaction(logger: Logger(label: "t")) { conn in
                try await conn.query("SELECT 1 FROM tenant_monthly_usage WHERE tenant_id = \(tenant) FOR UPDATE", logger: Logger(label: "t"))
                return try await body()
            }
        }
    }

    func testATenantPastItsShareWaitsThenGets429TenantBusyAuditedWhileAnotherTenantIsServed() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run({
            $0.admission.seats = 2
            $0.admission.seatsPerTenant = 1
            $0.admission.queuePerTenant = 1
            $0.admission.maxWait = .milliseconds(300)
        }) { client in
            let a = try await client.tenantWithCredentials()
            let b = try await client.tenantWithCredentials()
            let (aKey, aToken) = try await client.vaultKey(a, ["allowed_endpoints": ["GET /v1/customers/*"]])
            let (_, bToken) = try await client.vaultKey(b, ["allowed_endpoints": ["GET /v1/customers/*"]])
            // Both tokens verified once (argon2 comes before admission), so what follows is admission alone.
            expectStatus(try await client.proxy(.get, "/stripe/v1/customers/cus_0", key: aToken), .notFound)
            expectStatus(try await client.proxy(.get, "/stripe/v1/customers/cus_0", key: bToken), .notFound)
            let first = try await Self.holdingUsageRow(of: a.id) {
                // A's first request holds A's only seat, waiting in its reserve statement.
                let first = Task { try await client.proxy(.get, "/stripe/v1/customers/cus_1", key: aToken) }
                try await Task.sleep(for: .milliseconds(300))
                let queued = Task { try await client.proxy(.get, "/stripe/v1/customers/cus_2", key: aToken) }
                try await Task.sleep(for: .milliseconds(100))
                let started = ContinuousClock.now
                let full = try await client.proxy(.get, "/stripe/v1/customers/cus_3", key: aToken)
                XCTAssertEqual(full.status, .tooManyRequests, full.text)
                XCTAssertEqual(full.errorCode, "tenant_busy")
                XCTAssertEqual(full.headers[.retryAfter], "1")
                XCTAssertLessThan(ContinuousClock.now - started, .milliseconds(250), "a full queue refuses at once")
                let waited = try await queued.value
                XCTAssertEqual(waited.status, .tooManyRequests, waited.text)
                XCTAssertEqual(waited.errorCode, "tenant_busy", "refused after waiting its 300 ms")
                // B has a share of its own: served while A's seat is held.
                for i in 0..<3 {
                    expectStatus(try await client.proxy(.get, "/stripe/v1/customers/cus_b\(i)", key: bToken), .notFound, "B is served")
                }
                return first
            }
            expectStatus(try await first.value, .notFound, "A's held request answers once its counter is free")
            let rows = try await Ledger.audit(aKey)
            XCTAssertEqual(rows.count, 4, "one row per answer: \(rows)")
            XCTAssertEqual(rows.filter { $0.errorCode == "tenant_busy" && $0.decision == "denied" }.count, 2, "\(rows)")
            // The seat was given back: A is admitted again.
            expectStatus(try await client.proxy(.get, "/stripe/v1/customers/cus_4", key: aToken), .notFound)
        }
    }

    func testQuotaRefusalsAreDecidedFromMemoryAndEachIsAuditedBeforeItsAnswer() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run({ $0.proxy.freeMonthlyRequests = 1; $0.proxy.databaseDeadline = .milliseconds(1_500) }) { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["allowed_endpoints": ["GET /v1/customers/*"]])
            expectStatus(try await client.proxy(.get, "/stripe/v1/customers/cus_1", key: token), .notFound)
            let byStatement = try await client.proxy(.get, "/stripe/v1/customers/cus_2", key: token)
            XCTAssertEqual(byStatement.errorCode, "monthly_quota_exceeded", byStatement.text)
            // With the month's counter locked, a refusal that needed its reserve statement would wait for it and
            // answer 503 at the database deadline: these are decided from what the last refusal taught.
            let started = ContinuousClock.now
            let answers = try await Self.holdingUsageRow(of: t.id) {
                try await withThrowingTaskGroup(of: HTTPResult.self) { group in
                    for i in 0..<20 { group.addTask { try await client.proxy(.get, "/stripe/v1/customers/cus_x\(i)", key: token) } }
                    var out: [HTTPResult] = []
                    for try await r in group { out.append(r) }
                    return out
                }
            }
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(1), "no refusal waited on the counter")
            for r in answers {
                XCTAssertEqual(r.status, .tooManyRequests, r.text)
                XCTAssertEqual(r.errorCode, "monthly_quota_exceeded")
                XCTAssertTrue(r.text.contains("1 proxied requests"), r.text)
                XCTAssertNotNil(r.headers[.retryAfter])
            }
            // Every answer's row was committed before the answer: read at once, not waited for.
            let rows = try await Ledger.auditNow(keyId)
            XCTAssertEqual(rows.filter { $0.errorCode == "monthly_quota_exceeded" }.count, 21, "\(rows.count) rows")
            XCTAssertEqual(rows.count, 22)
        }
        XCTAssertEqual(h.fake.requests(path: nil, method: "GET").count, 1, "nothing refused reached the vendor")
    }

    /// Ten parallel identical tool calls (DESIGN §7): one goes upstream, the others wait for it and replay its answer.
    /// Their wait is not database work: they give their seats back while they wait, so a share of 2 seats and a
    /// 300 ms admission bound do not turn a slow vendor (1 s) into tenant_busy for the duplicates.
    func testIdenticalParallelCallsWaitingForTheFirstHoldNoSeat() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(1_000) }
        try await h.run({
            $0.proxy.upstreamTimeout = .seconds(5)
            $0.admission.seats = 4
            $0.admission.seatsPerTenant = 2
            $0.admission.maxWait = .milliseconds(300)
        }) { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            let form = [("amount", "700"), ("currency", "usd"), ("metadata[op]", "parallel-tool-call")]
            let answers = try await withThrowingTaskGroup(of: HTTPResult.self) { group in
                for _ in 0..<10 { group.addTask { try await client.proxy(.post, "/stripe/v1/charges", key: token, form: form) } }
                var out: [HTTPResult] = []
                for try await r in group { out.append(r) }
                return out
            }
            for r in answers { XCTAssertEqual(r.status, .ok, r.text) }
        }
        XCTAssertEqual(h.fake.moved.map(\.amount), [700], "one charge, nine replays")
    }
}
