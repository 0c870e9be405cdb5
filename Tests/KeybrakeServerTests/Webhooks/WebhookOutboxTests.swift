import Foundation
import HTTPTypes
import HummingbirdTesting
import KeybrakeServer
import PostgresNIO
import XCTest

/// Exactly once into the outbox (DESIGN §14): the event row is written by the statement that moves the counter.
final class WebhookOutboxTests: XCTestCase {
    struct Event: Equatable, CustomStringConvertible {
        var type: String, capField: String?, threshold: Int?, spent: Int64?, keyId: String?
        var description: String { "\(type) \(capField ?? "-") \(threshold.map(String.init) ?? "-") spent=\(spent.map(String.init) ?? "-")" }
    }

    static func events(tenant: String) async throws -> [Event] {
        try await TestDatabase.withClient { db in
            var out: [Event] = []
            for try await r in try await db.query("""
                SELECT type, data->>'cap_field', (data->>'threshold_percent')::int, (data->>'spent_micros')::bigint, key_id
                FROM webhook_events WHERE tenant_id = \(tenant) ORDER BY created_at, id
                """).decode((String, String?, Int?, Int64?, String?).self) {
                out.append(Event(type: r.0, capField: r.1, threshold: r.2, spent: r.3, keyId: r.4))
            }
            return out
        }
    }

    static func deliveriesPerEvent(tenant: String) async throws -> [Int] {
        try await TestDatabase.withClient { db in
            var out: [Int] = []
            for try await n in try await db.query("""
                SELECT count(d.id)::int FROM webhook_events e LEFT JOIN webhook_deliveries d ON d.event_id = e.id
                WHERE e.tenant_id = \(tenant) GROUP BY e.id
                """).decode(Int.self) { out.append(n) }
            return out
        }
    }

    /// 200 parallel $1 charges on two instances against a $100 daily and $150 monthly cap, thresholds 25/50/80/100:
    /// each daily threshold fires once, the monthly 25 % and 50 % once, 80 % never, the cap-reached event once — and
    /// each was written by the request that crossed it (the spend it reports is the first at or past the threshold).
    ///
    /// Mutation check (docs/operations.md "Webhook delivery"): computing the crossing in a second statement after the reserve, from
    /// the counter read then, makes this test fail — concurrent requests read a counter already past their own step,
    /// so the 25, 50 and 80 % crossings are never written.
    func testEachThresholdFiresExactlyOnceUnder200ConcurrentReservationsOnTwoInstances() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(5) }
        let (tenant, keyId, token) = try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "monthly_usd_cap": 150, "alert_thresholds": [25, 50, 80, 100]])
            let e = try await client.call(.post, "/v1/webhook-endpoints", token: t.admin, json: ["url": "https://hooks.example.com/keybrake"])
            expectStatus(e, .created)
            _ = try await client.proxy(.get, "/stripe/v1/balance", key: token)
            return (t, keyId, token)
        }
        // A loaded machine must not turn charges into upstream timeouts (unknown outcomes) here.
        let patient: @Sendable (inout AppConfiguration) -> Void = { $0.proxy.upstreamTimeout = .seconds(10) }
        let statuses = try await h.run(patient) { first in
            _ = try await first.proxy(.get, "/stripe/v1/balance", key: token)
            return try await h.run(patient) { second in
                _ = try await second.proxy(.get, "/stripe/v1/balance", key: token)
                return try await withThrowingTaskGroup(of: Int.self) { group in
                    for i in 0..<200 {
                        let client = i % 2 == 0 ? first : second
                        group.addTask {
                            Int(try await client.proxy(.post, "/stripe/v1/charges", key: token,
                                                       form: [("amount", "100"), ("currency", "usd"), ("description", "order \(i)")]).status.code)
                        }
                    }
                    var all: [Int] = []
                    for try await s in group { all.append(s) }
                    return all
                }
            }
        }
        XCTAssertEqual(statuses.filter { $0 == 200 }.count, 100, "\(statuses)")
        XCTAssertEqual(statuses.filter { $0 == 429 }.count, 100)
        let events = try await Self.events(tenant: tenant.id).filter { $0.keyId == keyId }
        let crossings = events.filter { $0.type == "key.spend.threshold_crossed" }
        XCTAssertEqual(crossings.filter { $0.capField == "daily_usd_cap" }.compactMap(\.threshold).sorted(), [25, 50, 80, 100], "\(events)")
        XCTAssertEqual(crossings.filter { $0.capField == "monthly_usd_cap" }.compactMap(\.threshold).sorted(), [25, 50], "\(events)")
        XCTAssertEqual(events.filter { $0.type == "key.cap.reached" }.map(\.capField), ["daily_usd_cap"], "\(events)")
        // The request that crossed it wrote it: the spend it reports is the first $1 step at or past the threshold.
        for e in crossings {
            let cap: Int64 = e.capField == "daily_usd_cap" ? 100_000_000 : 150_000_000
            let threshold = cap * Int64(e.threshold ?? 0) / 100
            XCTAssertTrue((e.spent ?? 0) >= threshold && (e.spent ?? 0) - 1_000_000 < threshold, "\(e)")
        }
        XCTAssertEqual(events.count, 7)
        // One endpoint: one delivery each.
        let deliveries = try await Self.deliveriesPerEvent(tenant: tenant.id)
        XCTAssertEqual(deliveries, Array(repeating: 1, count: deliveries.count))
        XCTAssertEqual(deliveries.count, 7)
    }

    /// A release takes the counter back under a threshold it crossed; crossing it again in the same period does not
    /// fire a second time (the mark lives on the counter row).
    func testAThresholdCrossedAgainAfterAReleaseDoesNotFireTwice() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 10])
            h.fake.faultQueue.withLockedValue { $0 = [.status(400)] }
            let declined = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "600"), ("currency", "usd"), ("description", "a")])
            XCTAssertEqual(declined.status.code, 400, declined.text)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 0, reserved: 0, unknown: 0), "released") }
            let charged = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "600"), ("currency", "usd"), ("description", "b")])
            XCTAssertEqual(charged.status.code, 200, charged.text)
            let events = try await Self.events(tenant: t.id)
            XCTAssertEqual(events.map(\.type), ["key.spend.threshold_crossed"], "\(events)")
            XCTAssertEqual(events.first?.threshold, 50)
        }
    }

    /// No threshold crossed, nothing written: charges that stay under every threshold leave no event, no delivery and
    /// no mark on the counters.
    func testChargesUnderEveryThresholdWriteNothing() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            expectStatus(try await client.call(.post, "/v1/webhook-endpoints", token: t.admin, json: ["url": "https://hooks.example.com/k"]), .created)
            for i in 0..<5 {
                let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "900"), ("currency", "usd"), ("description", "n\(i)")])
                XCTAssertEqual(r.status.code, 200)
            }
            let events = try await Self.events(tenant: t.id)
            XCTAssertEqual(events, [])
            let marks = try await TestDatabase.withClient { db in
                var n = 0
                for try await c in try await db.query(
                    "SELECT count(*)::int FROM spend_counters WHERE key_id = \(keyId) AND (alerted_percents IS NOT NULL OR cap_reached IS NOT NULL)"
                ).decode(Int.self) { n = c }
                return n
            }
            XCTAssertEqual(marks, 0)
        }
    }

    /// A child key's spend counts on its parent too: the child's thresholds fire on the child's counters, the parent's
    /// on the parent's, and the child's events name its ancestors.
    func testAChildKeysSpendFiresItsOwnAndItsParentsThresholds() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (parentId, parentToken) = try await client.vaultKey(t, ["daily_usd_cap": 10, "alert_thresholds": [50]])
            let minted = try await client.call(.post, "/v1/child-keys", token: parentToken,
                                               json: ["label": "run-1", "total_usd_cap": 8, "expires_in_seconds": 600])
            expectStatus(minted, .created)
            let childId = (minted.json["key"] as? [String: Any])?["id"] as? String ?? ""
            let childToken = minted.json["token"] as? String ?? ""
            XCTAssertEqual((minted.json["key"] as? [String: Any])?["alert_thresholds"] as? [Int], [50], "inherited")
            let r = try await client.proxy(.post, "/stripe/v1/charges", key: childToken, form: [("amount", "600"), ("currency", "usd"), ("description", "c")])
            XCTAssertEqual(r.status.code, 200, r.text)
            let events = try await Self.events(tenant: t.id)
            XCTAssertEqual(Set(events.map { "\($0.keyId ?? "") \($0.capField ?? "") \($0.threshold ?? 0)" }),
                           ["\(childId) total_usd_cap 50", "\(parentId) daily_usd_cap 50"], "\(events)")
            let ancestors = try await TestDatabase.withClient { db in
                var out = ""
                for try await a in try await db.query("SELECT data->>'ancestor_ids' FROM webhook_events WHERE key_id = \(childId)").decode(String.self) { out = a }
                return out
            }
            XCTAssertEqual(ancestors, "[\"\(parentId)\"]")
        }
    }
}
