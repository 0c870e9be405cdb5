import Foundation
import HTTPTypes
import HummingbirdTesting
import KeybrakeServer
import PostgresNIO
import XCTest

/// Exactly once into the outbox (DESIGN §14): the statement that moves a counter across a threshold writes the event.
final class AlertEventsTests: XCTestCase {
    static func events(tenantId: String) async throws -> [(type: String, keyId: String?, data: String)] {
        try await TestDatabase.withClient { db in
            var out: [(String, String?, String)] = []
            for try await row in try await db.query(
                "SELECT type, key_id, data::TEXT FROM events WHERE tenant_id = \(tenantId) ORDER BY created_at, id"
            ).decode((String, String?, String).self) { out.append(row) }
            return out
        }
    }

    static func object(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    /// 200 parallel $0.50 charges (two first, 198 at once), split across two app instances, against a $100 daily cap: all 200 fit exactly.
    /// Each of 50 / 80 / 100 % is crossed exactly once, by the request that moved the counter from just below it
    /// to it ($49.50 → $50.00, …): the event carries the counter's value under the lock. Then 10 parallel charges
    /// past the cap are denied and write one `key.cap.reached`.
    ///
    /// Mutation check (run on this branch, 2026-12-07): with kb_reserve's own call disabled and the crossing computed
    /// by a second statement after `kb_begin` returned (SpendLedger.begin/beginMany calling kb_alert_crossings on
    /// the counters as they were then), this test failed: only the 100 % event was written — by the time the
    /// separate statement read the counter, other requests' reservations had already carried it past 50 % and 80 %,
    /// so "previous < threshold ≤ spent" was never true there.
    func testThresholdsCrossedExactlyOnceUnderConcurrencyOnTwoInstances() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(5) }
        let (tenant, keyId, token) = try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            return (t, keyId, token)
        }
        // A loaded 2-core box can take longer than the harness's 500 ms upstream timeout for a 200-request burst.
        let patient: @Sendable (inout AppConfiguration) -> Void = { $0.proxy.upstreamTimeout = .seconds(15) }
        let statuses = try await h.run(patient) { first in
            try await h.run(patient) { second in
                // First use of the token on each instance (argon2 once), so the burst does not queue behind hashing.
                _ = try await first.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "50"), ("currency", "usd"), ("description", "warm a")])
                _ = try await second.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "50"), ("currency", "usd"), ("description", "warm b")])
                return try await withThrowingTaskGroup(of: Int.self) { group in
                    for i in 0..<198 {
                        let client = i % 2 == 0 ? first : second
                        group.addTask {
                            Int(try await client.proxy(.post, "/stripe/v1/charges", key: token,
                                                       form: [("amount", "50"), ("currency", "usd"), ("description", "order \(i)")]).status.code)
                        }
                    }
                    var all: [Int] = []
                    for try await s in group { all.append(s) }
                    return all
                }
            }
        }
        XCTAssertEqual(statuses.filter { $0 == 200 }.count, 198, "\(statuses.filter { $0 != 200 })")
        do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 100_000_000, reserved: 0, unknown: 0)) }
        let events = try await Self.events(tenantId: tenant.id)
        let crossings = events.filter { $0.type == "key.spend.threshold_crossed" }.map { Self.object($0.data) }
        XCTAssertEqual(crossings.compactMap { $0["threshold_percent"] as? Int }.sorted(), [50, 80, 100], "\(crossings)")
        for c in crossings {
            let t = c["threshold_percent"] as? Int ?? 0
            let spent = (c["spent_micros"] as? NSNumber)?.int64Value ?? -1
            let previous = (c["previous_spent_micros"] as? NSNumber)?.int64Value ?? -1
            // The counter reached the threshold exactly at this request ($0.50 charges, thresholds on $0.50 steps).
            XCTAssertEqual(spent, Int64(t) * 1_000_000, "\(c)")
            XCTAssertEqual(previous, spent - 500_000, "\(c)")
            XCTAssertEqual(c["key_id"] as? String, keyId)
            XCTAssertEqual(c["cap_field"] as? String, "daily_usd_cap")
            XCTAssertEqual(c["cap_usd"] as? Int, 100)
            XCTAssertEqual(c["tenant_id"] as? String, tenant.id)
        }
        // Past the cap: ten parallel denials, one cap.reached.
        let denied = try await h.run { first in
            try await h.run { second in
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for i in 0..<10 {
                        let client = i % 2 == 0 ? first : second
                        group.addTask {
                            Int(try await client.proxy(.post, "/stripe/v1/charges", key: token,
                                                       form: [("amount", "50"), ("currency", "usd"), ("description", "late \(i)")]).status.code)
                        }
                    }
                    var all: [Int] = []
                    for try await s in group { all.append(s) }
                    return all
                }
            }
        }
        XCTAssertEqual(denied, Array(repeating: 429, count: 10))
        let after = try await Self.events(tenantId: tenant.id)
        let reached = after.filter { $0.type == "key.cap.reached" }.map { Self.object($0.data) }
        XCTAssertEqual(reached.count, 1, "\(after)")
        XCTAssertEqual((reached.first?["spent_micros"] as? NSNumber)?.int64Value, 100_000_000)
        XCTAssertEqual(after.filter { $0.type == "key.spend.threshold_crossed" }.count, 3)
    }

    /// A child key inherits its parent's thresholds; the parent's own thresholds fire on the parent's counters
    /// (which hold the child's spend too); revoking writes key.revoked for the key and its child.
    func testChildInheritsThresholdsAndAncestorsFireOnTheirOwnCounters() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (parentId, parentToken) = try await client.vaultKey(t, ["daily_usd_cap": 10, "alert_thresholds": [30]])
            let bad = try await client.call(.patch, "/v1/keys/\(parentId)", token: t.admin, json: ["alert_thresholds": [0, 101]])
            XCTAssertEqual(bad.status, .badRequest)
            XCTAssertEqual(bad.errorField, "alert_thresholds")
            let mint = try await client.call(.post, "/v1/child-keys", token: parentToken,
                                             json: ["label": "run-1", "total_usd_cap": 5, "expires_in_seconds": 600])
            XCTAssertEqual(mint.status, .created, mint.text)
            let childId = (mint.json["key"] as? [String: Any])?["id"] as? String ?? ""
            let childToken = mint.json["token"] as? String ?? ""
            XCTAssertTrue((mint.json["key"] as? [String: Any])?["alert_thresholds"] is NSNull)
            // $2: child total 40 % (crosses its inherited 30 %), parent day 20 %.
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: childToken, form: [("amount", "200"), ("currency", "usd")]), .ok)
            // $2 more: parent day 40 % (crosses its own 30 %); child 80 % (nothing new).
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: childToken, form: [("amount", "200"), ("currency", "usd"), ("description", "2")]), .ok)
            let crossings = try await Self.events(tenantId: t.id).filter { $0.type == "key.spend.threshold_crossed" }.map { Self.object($0.data) }
            XCTAssertEqual(crossings.count, 2, "\(crossings)")
            let child = crossings.first { $0["key_id"] as? String == childId }
            XCTAssertEqual(child?["cap_field"] as? String, "total_usd_cap")
            XCTAssertEqual(child?["threshold_percent"] as? Int, 30)
            XCTAssertEqual(child?["period"] as? String, "total")
            XCTAssertEqual(child?["ancestor_key_ids"] as? [String], [parentId])
            let parent = crossings.first { $0["key_id"] as? String == parentId }
            XCTAssertEqual(parent?["cap_field"] as? String, "daily_usd_cap")
            XCTAssertEqual(parent?["requested_by_key_id"] as? String, childId)
            XCTAssertEqual((parent?["spent_micros"] as? NSNumber)?.int64Value, 4_000_000)

            expectStatus(try await client.call(.post, "/v1/keys/\(parentId)/revoke", token: t.admin), .ok)
            let revoked = try await Self.events(tenantId: t.id).filter { $0.type == "key.revoked" }.compactMap(\.keyId)
            XCTAssertEqual(Set(revoked), [parentId, childId])
        }
    }

    /// An upstream 500 leaves the outcome unknown: `request.outcome_unknown` names the audit id to resolve, once.
    func testUnknownOutcomeWritesOneEventNamingTheAuditId() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            h.fake.setFault(.status(500))
            let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "700"), ("currency", "usd")])
            XCTAssertEqual(r.status.code, 500, r.text)
            h.fake.setFault(.none)
            let unknown = try await Self.events(tenantId: t.id).filter { $0.type == "request.outcome_unknown" }.map { Self.object($0.data) }
            XCTAssertEqual(unknown.count, 1, "\(unknown)")
            let auditId = unknown.first?["audit_id"] as? String ?? ""
            XCTAssertTrue(auditId.hasPrefix("aud_"), "\(unknown)")
            XCTAssertEqual(unknown.first?["key_id"] as? String, keyId)
            XCTAssertEqual((unknown.first?["amount_micros"] as? NSNumber)?.int64Value, 7_000_000)
            XCTAssertEqual(unknown.first?["resolve"] as? String, "POST /v1/audit/\(auditId)/resolve")
            expectStatus(try await client.call(.post, "/v1/audit/\(auditId)/resolve", token: t.admin, json: ["outcome": "released"]), .created)
            let after = try await Self.events(tenantId: t.id).filter { $0.type == "request.outcome_unknown" }
            XCTAssertEqual(after.count, 1)
        }
    }

    /// `key.expiring` from the sweep: once per expiry, for a key expiring within 24 h that lived longer than a day.
    func testExpiringKeysAreAnnouncedOnceBySweep() async throws {
        try await TestApp.run({ $0.webhooks.deliver = false }) { client in
            let (tenantId, admin) = try await client.signup()
            let soon = try await client.createKey(admin: admin, ["expires_at": RFC3339Text.in(hours: 30)])
            let later = try await client.createKey(admin: admin, ["expires_at": RFC3339Text.in(hours: 100)])
            try await TestDatabase.withClient { db in
                // Both keys made three days ago (a key that lives less than a day is not announced).
                try await db.query("UPDATE vault_keys SET created_at = now() - interval '3 days' WHERE id IN (\(soon.id), \(later.id))")
                let sweep = "SELECT kb_alert_sweep(now() + interval '7 hours', 1000)"
                try await db.query(PostgresQuery(unsafeSQL: sweep))
                try await db.query(PostgresQuery(unsafeSQL: sweep))
            }
            let expiring = try await Self.events(tenantId: tenantId).filter { $0.type == "key.expiring" }
            XCTAssertEqual(expiring.map(\.keyId), [soon.id])
            XCTAssertNotNil(Self.object(expiring.first?.data ?? "")["expires_at"] as? String)
        }
    }
}

enum RFC3339Text {
    static func `in`(hours: Double) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date().addingTimeInterval(hours * 3600))
    }
}
