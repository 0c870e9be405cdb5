import Foundation
import HTTPTypes
import HummingbirdTesting
import KeybrakeServer
import XCTest

/// The promise of the product: money never moves past a cap, and never twice.
final class ProxyConcurrencyTests: XCTestCase {
    /// 50 parallel $10 charges (distinct bodies) against a $100 daily cap, split across two server
    /// instances sharing one database: exactly 10 reach the vendor and exactly $100.00 is spent.
    func testParallelChargesAcrossTwoInstancesNeverOvershootTheCap() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(20) }
        let (tenant, keyId, token) = try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            return (t, keyId, token)
        }
        _ = tenant
        let statuses = try await h.run { first in
            try await h.run { second in
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for i in 0..<50 {
                        let client = i % 2 == 0 ? first : second
                        group.addTask {
                            let r = try await client.proxy(.post, "/stripe/v1/charges", key: token,
                                                           form: [("amount", "1000"), ("currency", "usd"), ("description", "order \(i)")])
                            return Int(r.status.code)
                        }
                    }
                    var all: [Int] = []
                    for try await s in group { all.append(s) }
                    return all
                }
            }
        }
        XCTAssertEqual(statuses.filter { $0 == 200 }.count, 10, "\(statuses)")
        XCTAssertEqual(statuses.filter { $0 == 429 }.count, 40, "\(statuses)")
        XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 10, "exactly ten charges reached the vendor")
        do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 100_000_000, reserved: 0, unknown: 0)) }
        let audit = try await Ledger.audit(keyId)
        XCTAssertEqual(audit.count, 50)
        XCTAssertEqual(audit.filter { $0.decision == "allowed" && $0.outcome == "settled" }.count, 10)
        XCTAssertEqual(audit.filter { $0.errorCode == "daily_usd_cap_exceeded" }.count, 40)
        XCTAssertEqual(audit.filter { $0.decision == "allowed" }.map(\.amount).reduce(0, +), 100_000_000)
    }

    /// A burst on one hot key goes through the batched begin (kb_claim_and_reserve_many): 40 different $1 charges and a
    /// retry of each of the first 10 (same Idempotency-Key, same body) against a $30 cap. Exactly 30 charges
    /// reach the vendor, none twice, the ledger holds exactly $30, and the burst really was batched.
    func testBurstOnOneHotKeyIsBatchedAndStaysExact() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(30) }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 30])
            // One request first, so the burst does not queue behind argon2 (the first use of a token is hashed).
            _ = try await client.proxy(.get, "/stripe/v1/balance", key: token)
            let before = try await Self.beginCounters(client)
            let statuses = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for i in 0..<50 {
                    let n = i < 40 ? i : i - 40
                    group.addTask {
                        let r = try await client.proxy(.post, "/stripe/v1/charges", key: token,
                                                       form: [("amount", "100"), ("currency", "usd"), ("description", "burst \(n)")],
                                                       headers: ["Idempotency-Key": "burst-\(n)"])
                        return (n, Int(r.status.code))
                    }
                }
                var all: [(Int, Int)] = []
                for try await s in group { all.append(s) }
                return all
            }
            let charges = h.fake.requests(path: "/v1/charges")
            XCTAssertEqual(charges.count, 30, "exactly the cap's worth of charges reached the vendor: \(statuses)")
            let keys = charges.compactMap { $0.headers["idempotency-key"] }
            XCTAssertEqual(Set(keys).count, charges.count, "no charge reached the vendor twice")
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 30_000_000, reserved: 0, unknown: 0)) }
            XCTAssertEqual(statuses.filter { $0.1 == 200 }.count, statuses.count - statuses.filter { $0.1 == 429 || $0.1 == 409 }.count)
            let after = try await Self.beginCounters(client)
            XCTAssertGreaterThan(after.requests - before.requests, after.statements - before.statements,
                                 "concurrent begins on one key shared statements (\(after) vs \(before))")
        }
    }

    /// keybrake_begin_statements_total and keybrake_begin_requests_total from /metrics.
    static func beginCounters(_ client: some TestClientProtocol) async throws -> (statements: Double, requests: Double) {
        let text = try await client.call(.get, "/metrics", token: TestApp.metricsToken).text
        func value(_ name: String) -> Double {
            for line in text.split(separator: "\n") where line.hasPrefix(name + " ") || line.hasPrefix(name + "{") {
                return Double(line.split(separator: " ").last ?? "") ?? 0
            }
            return 0
        }
        return (value("keybrake_begin_statements_total"), value("keybrake_begin_requests_total"))
    }

    func testDeclineReleasesAndServerErrorsHoldTheReservation() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 30])

            h.fake.setFault(.status(402))
            let declined = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1000"), ("currency", "usd"), ("description", "a")])
            expectStatus(declined, .init(code: 402), "the vendor's own decline passes through")
            XCTAssertEqual((declined.json["error"] as? [String: Any])?["code"] as? String, "card_declined")
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 0, reserved: 0, unknown: 0), "decline released the reservation") }

            h.fake.setFault(.status(500))
            let failed = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1000"), ("currency", "usd"), ("description", "b")])
            expectStatus(failed, .internalServerError)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 0, reserved: 0, unknown: 10_000_000), "5xx: outcome unknown, still counted") }

            h.fake.setFault(.delay(.seconds(2)))
            let slow = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1000"), ("currency", "usd"), ("description", "c")])
            expectStatus(slow, .gatewayTimeout)
            XCTAssertEqual((slow.json["error"] as? [String: Any])?["code"] as? String, "upstream_timeout")
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v.unknown, 20_000_000) }

            h.fake.setFault(.none)
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1000"), ("currency", "usd"), ("description", "d")]), .ok)
            let capped = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1000"), ("currency", "usd"), ("description", "e")])
            expectStatus(capped, .tooManyRequests, "unknown outcomes still count against the cap")
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 10_000_000, reserved: 0, unknown: 20_000_000)) }

            let audit = try await Ledger.audit(keyId)
            XCTAssertEqual(audit.map { $0.outcome ?? $0.errorCode ?? "-" },
                           ["released", "outcome_unknown", "outcome_unknown", "settled", "daily_usd_cap_exceeded"])
        }
    }

    /// Case 8 of the money-edges issue: a connection that was never made (refused here; DNS, TLS and connect
    /// timeouts alike) sent nothing, so the reservation is released and the identical retry is not refused.
    func testRefusedConnectionReleasesTheReservation() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        // Nothing listens on port 9: the connection fails after the reservation was made, before any byte left.
        try await h.run({ $0.proxy.upstreams[.stripe] = "http://127.0.0.1:9"; $0.proxy.upstreams[.twilio] = "http://127.0.0.1:9" }) { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 30])
            for _ in 0..<2 {
                let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1000"), ("currency", "usd")])
                expectStatus(r, .badGateway)
                XCTAssertEqual((r.json["error"] as? [String: Any])?["code"] as? String, "upstream_unreachable")
            }
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 0, reserved: 0, unknown: 0)) }
            do { let a = try await Ledger.audit(keyId); XCTAssertEqual(a.map { $0.outcome ?? "-" }, ["released", "released"]) }
            // Twilio, which cannot deduplicate a retry, takes the retry too: nothing was sent.
            let sms = try await client.vaultKey(t, ["vendor": "twilio", "allowed_endpoints": ["POST /2010-04-01/Accounts/*/Messages.json"], "daily_usd_cap": 1])
            for _ in 0..<2 {
                let r = try await client.proxy(.post, "/twilio/2010-04-01/Accounts/AC1/Messages.json", key: sms.token,
                                               form: [("To", "+15551234567"), ("From", "+15550000000"), ("Body", "hi")], basicAuth: true)
                expectStatus(r, .badGateway)
                XCTAssertEqual(r.headers[HTTPField.Name("Keybrake-Error-Code")!], "upstream_unreachable")
            }
        }
    }

    /// Postgres unreachable: the proxy fails closed within its deadline (503, nothing forwarded), never hangs.
    func testDatabaseDownFailsClosedQuickly() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run({ $0.databaseURL.port = 1; $0.proxy.databaseDeadline = .milliseconds(500) }) { client in
            let token = "kb_vault_" + String(repeating: "A", count: 16) + "_" + String(repeating: "b", count: 43)
            let started = ContinuousClock.now
            let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "100"), ("currency", "usd")])
            let elapsed = ContinuousClock.now - started
            expectStatus(r, .serviceUnavailable)
            XCTAssertEqual((r.json["error"] as? [String: Any])?["code"] as? String, "unavailable")
            XCTAssertLessThan(elapsed, .seconds(5), "fails closed at the deadline instead of waiting for the database")
        }
        XCTAssertEqual(h.fake.received.withLockedValue { $0.count }, 0, "nothing forwarded while the database is down")
    }
}
