import Foundation
import HTTPTypes
import HummingbirdTesting
import KeybrakeServer
import PostgresNIO
import XCTest

/// Key rows from memory with acknowledged changes (DESIGN §4, issue 16). The tenant is on the pro plan and the calls
/// move no money, so nothing but the replica's key row decides them: a stale row in memory would let them through.
final class KeyDirectoryTests: XCTestCase {
    /// Both replicas serve keys from memory (each has registered its lease).
    static func waitForReplicas(_ count: Int) async throws {
        for _ in 0..<200 {
            let live = try await TestDatabase.withClient { db in
                var n = 0
                for try await c in try await db.query("SELECT count(*)::int FROM replicas WHERE lease_until > now()").decode(Int.self) { n = c }
                return n
            }
            if live >= count { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTFail("\(count) replicas never registered")
    }

    static func proTenant(_ client: any TestClientProtocol) async throws -> Tenant {
        let t = try await client.tenantWithCredentials()
        expectStatus(try await client.call(.post, "/v1/operator/tenants/\(t.id)/plan", token: "operator-secret-for-tests", json: ["plan": "pro"]), .ok)
        return t
    }

    static let noMoney = ["allowed_endpoints": ["POST /v1/customers", "GET /v1/charges/*"]]

    /// A replica that stops removes its lease row at once: its goodbye runs while its task is being cancelled, so an
    /// admin change after it need not wait out the lease (5 s). Mutation: with the goodbye's deadline hearing that
    /// cancellation (Deadline.run's default), the goodbye never ran and the row stayed live.
    func testAStoppedReplicaLeavesAtOnce() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { _ in try await Self.waitForReplicas(1) }
        let live = try await TestDatabase.withClient { db in
            var n = 0
            for try await c in try await db.query("SELECT count(*)::int FROM replicas WHERE lease_until > now()").decode(Int.self) { n = c }
            return n
        }
        XCTAssertEqual(live, 0, "the stopped replica's lease is still live")
    }

    /// A revoke on replica A answers only after replica B applied it (the answer says two replicas acknowledged), and
    /// B refuses the key on its very next request — no sleep.
    func testRevokeIsAnsweredOnlyAfterEveryReplicaAppliedIt() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { a in
            try await h.run { b in
                try await Self.waitForReplicas(2)
                let t = try await Self.proTenant(a)
                let (keyId, token) = try await a.vaultKey(t, Self.noMoney)
                for n in 0..<3 {  // the key row is now in both replicas' memory
                    for (i, client) in [a, b].enumerated() {
                        expectStatus(try await client.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "\(n)-\(i)@example.com")]), .ok)
                    }
                }
                let revoked = try await a.call(.post, "/v1/keys/\(keyId)/revoke", token: t.admin)
                expectStatus(revoked, .ok)
                let replicas = revoked.json["replicas"] as? [String: Any]
                XCTAssertGreaterThanOrEqual(replicas?["acknowledged"] as? Int ?? 0, 2, revoked.text)
                XCTAssertEqual(replicas?["pending"] as? Int, 0)
                let refused = try await b.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "after@example.com")])
                expectStatus(refused, .unauthorized)
                XCTAssertEqual(refused.errorCode, "vault_key_revoked")
                XCTAssertEqual(h.fake.requests(path: "/v1/customers").count, 6, "nothing after the revoke reached the vendor")
            }
        }
    }

    /// A PATCH on A is enforced on B's next request: narrowed endpoints (only B's key row decides that) and a lower cap.
    func testAPatchIsEnforcedOnTheNextRequestEverywhere() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { a in
            try await h.run { b in
                try await Self.waitForReplicas(2)
                let t = try await Self.proTenant(a)
                let (keyId, token) = try await a.vaultKey(t, ["allowed_endpoints": ["POST /v1/customers", "POST /v1/charges"], "daily_usd_cap": 100])
                expectStatus(try await b.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "1@example.com")]), .ok)
                expectStatus(try await b.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "500"), ("currency", "usd")]), .ok)
                let patched = try await a.call(.patch, "/v1/keys/\(keyId)", token: t.admin,
                                               json: ["allowed_endpoints": ["POST /v1/charges"], "daily_usd_cap": 6])
                expectStatus(patched, .ok)
                XCTAssertEqual((patched.json["replicas"] as? [String: Any])?["pending"] as? Int, 0)
                let narrowed = try await b.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "2@example.com")])
                expectStatus(narrowed, .forbidden)
                XCTAssertEqual(narrowed.errorCode, "endpoint_not_allowed")
                let capped = try await b.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "200"), ("currency", "usd")])
                XCTAssertEqual(capped.errorCode, "daily_usd_cap_exceeded")
            }
        }
    }

    /// A replica whose notification connection is cut stops serving from memory at once: a key revoked behind its
    /// back (in SQL, with no notification at all) is still refused on its next request.
    func testAReplicaThatLosesItsListenerReadsPostgres() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { b in
            try await Self.waitForReplicas(1)
            let t = try await Self.proTenant(b)
            let (keyId, token) = try await b.vaultKey(t, Self.noMoney)
            expectStatus(try await b.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "1@example.com")]), .ok)
            // Cut every listener, and revoke the key without announcing it.
            let pids = try await TestDatabase.withClient { db in
                var pids: [Int] = []
                for try await pid in try await db.query("SELECT backend_pid FROM replicas WHERE lease_until > now()").decode(Int?.self) {
                    if let pid { pids.append(pid) }
                }
                for pid in pids { _ = try await db.query("SELECT pg_terminate_backend(\(pid)::int)") }
                _ = try await db.query("UPDATE vault_keys SET status = 'revoked', revoked_at = now() WHERE id = \(keyId)")
                return pids
            }
            XCTAssertFalse(pids.isEmpty)
            // The replica notices the cut (its connection closes) and gives up its lease; wait for that, not a time.
            for _ in 0..<200 {
                let gone = try await TestDatabase.withClient { db in
                    var n = 0
                    for try await c in try await db.query(
                        "SELECT count(*)::int FROM replicas WHERE backend_pid = ANY(\(pids)) AND lease_until > now()"
                    ).decode(Int.self) { n = c }
                    return n == 0
                }
                if gone { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            let refused = try await b.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "2@example.com")])
            expectStatus(refused, .unauthorized)
            XCTAssertEqual(refused.errorCode, "vault_key_revoked")
        }
    }
}
