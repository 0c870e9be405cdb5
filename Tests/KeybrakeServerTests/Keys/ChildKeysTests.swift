import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOConcurrencyHelpers
import KeybrakeServer
import PostgresNIO
import XCTest

/// Per-run child keys (DESIGN §9, issue 15): minted with the parent's vault key, never wider than the parent, and
/// reserved against the child and every ancestor in one statement.
final class ChildKeysTests: XCTestCase {
    static let charge: [(String, String)] = [("amount", "100"), ("currency", "usd")]

    /// Minting needs a vault key, not an admin token; the child inherits the parent and may only narrow it, and
    /// the 400 names the field that would widen it.
    func testMintNarrowsTheParentAndNamesTheFieldThatWouldWidenIt() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (parentId, parent) = try await client.vaultKey(t, [
                "allowed_endpoints": ["POST /v1/charges", "GET /v1/charges/**"], "daily_usd_cap": 100, "max_request_usd": 20,
                "duplicate_window_seconds": 60,
            ])
            let minted = try await client.call(.post, "/v1/child-keys", token: parent, json: [
                "label": "run 42", "run_id": "run-42", "total_usd_cap": 10, "allowed_endpoints": ["POST /v1/charges"],
            ])
            expectStatus(minted, .created)
            let key = minted.json["key"] as? [String: Any] ?? [:]
            XCTAssertEqual(key["parent_key_id"] as? String, parentId)
            XCTAssertEqual(key["ancestor_key_ids"] as? [String], [parentId])
            XCTAssertEqual(key["run_id"] as? String, "run-42")
            XCTAssertEqual(key["total_usd_cap"] as? Double, 10)
            XCTAssertEqual(key["vendor"] as? String, "stripe")
            XCTAssertEqual(key["duplicate_window_seconds"] as? Int, 60, "inherited")
            let expires = (key["expires_at"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) }
            XCTAssertNotNil(expires)
            if let expires { XCTAssertEqual(expires.timeIntervalSinceNow, 3600, accuracy: 30, "a child expires in an hour by default") }
            XCTAssertTrue((minted.json["token"] as? String ?? "").hasPrefix("kb_vault_"))

            for (body, field) in [
                (["label": "x", "daily_usd_cap": 101], "daily_usd_cap"),
                (["label": "x", "max_request_usd": 21], "max_request_usd"),
                (["label": "x", "allowed_endpoints": ["POST /v1/**"]], "allowed_endpoints"),
                (["label": "x", "allowed_endpoints": ["POST /v1/refunds"]], "allowed_endpoints"),
                (["label": "x", "duplicate_window_seconds": 0], "duplicate_window_seconds"),
                (["label": "x", "expires_in_seconds": 0], "expires_in_seconds"),
                (["label": "x", "vendor": "twilio"], "vendor"),
                (["run_id": "no label"], "label"),
            ] as [([String: Any], String)] {
                let r = try await client.call(.post, "/v1/child-keys", token: parent, json: body)
                expectStatus(r, .badRequest, "\(body)")
                XCTAssertEqual(r.errorField, field, "\(body): \(r.text)")
            }
            // Not a vault key: no key to mint under.
            for token in [t.admin, "kb_vault_nothing", ""] {
                let r = try await client.call(.post, "/v1/child-keys", token: token.isEmpty ? nil : token, json: ["label": "x"])
                expectStatus(r, .unauthorized)
                XCTAssertEqual(r.errorCode, "vault_key_invalid")
            }
            // The admin listing shows root keys; the child is under its parent.
            let list = try await client.call(.get, "/v1/keys", token: t.admin)
            XCTAssertEqual((list.json["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, [parentId])
            let children = try await client.call(.get, "/v1/keys/\(parentId)/children", token: t.admin)
            expectStatus(children, .ok)
            XCTAssertEqual((children.json["data"] as? [[String: Any]])?.count, 1)
        }
    }

    /// 20 children of a $100 parent, each capped at $10 for its life, race 200 parallel $1 charges across two
    /// replicas: exactly $100 reaches the vendor, no child passes $10, and the parent's spend holds its children's.
    func testChildrenRacingOnTwoReplicasNeverTakeTheParentPastItsCap() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(10) }
        let (parentId, children) = try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (parentId, parent) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            var children: [(String, String)] = []
            for i in 0..<20 {
                let r = try await client.call(.post, "/v1/child-keys", token: parent, json: ["label": "run \(i)", "total_usd_cap": 10])
                expectStatus(r, .created)
                children.append(((r.json["key"] as? [String: Any])?["id"] as? String ?? "", r.json["token"] as? String ?? ""))
            }
            return (parentId, children)
        }
        // A loaded CI machine must not turn slow answers into unknown outcomes here (other tests cover those), nor
        // forty first verifications (argon2, two cores shared fairly) into 503s past the database deadline.
        let patient: @Sendable (inout AppConfiguration) -> Void = { $0.proxy.upstreamTimeout = .seconds(10); $0.proxy.databaseDeadline = .seconds(15) }
        let statuses = try await h.run(patient) { first in
            try await h.run(patient) { second in
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for i in 0..<200 {
                        let client = i % 2 == 0 ? first : second
                        let token = children[i % 20].1
                        group.addTask {
                            let r = try await client.proxy(.post, "/stripe/v1/charges", key: token,
                                                           form: Self.charge + [("description", "item \(i)")])
                            return Int(r.status.code)
                        }
                    }
                    var all: [Int] = []
                    for try await s in group { all.append(s) }
                    return all
                }
            }
        }
        XCTAssertEqual(statuses.filter { $0 == 200 }.count, 100, "\(statuses)")
        XCTAssertEqual(statuses.filter { $0 == 429 }.count, 100, "\(statuses)")
        XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 100, "exactly the parent's cap reached the vendor")
        do { let v = try await Ledger.day(parentId); XCTAssertEqual(v, .init(settled: 100_000_000, reserved: 0, unknown: 0)) }
        var sum: Int64 = 0
        for (childId, _) in children {
            let counted = try await Self.counted(childId, period: "total")
            XCTAssertLessThanOrEqual(counted, 10_000_000, "child \(childId) stayed within its own cap")
            sum += counted
        }
        XCTAssertEqual(sum, 100_000_000, "the children's spend is the parent's")
        let parentTotal = try await Self.counted(parentId, period: "total")
        XCTAssertEqual(parentTotal, 100_000_000)
    }

    /// A lifetime cap never resets; a child's lifetime cap binds before a looser parent's.
    func testLifetimeCapOnOrdinaryAndChildKeys() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["total_usd_cap": 3, "daily_usd_cap": 100])
            for i in 0..<3 {
                expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: Self.charge + [("description", "\(i)")]), .ok)
            }
            let over = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: Self.charge + [("description", "4")])
            expectStatus(over, .tooManyRequests)
            XCTAssertEqual(over.errorCode, "total_usd_cap_exceeded")
            let shown = try await client.call(.get, "/v1/keys/\(keyId)", token: t.admin)
            let total = (shown.json["spend"] as? [String: Any])?["total"] as? [String: Any]
            XCTAssertEqual(total?["settled_usd"] as? Double, 3)
            XCTAssertEqual(total?["cap_usd"] as? Double, 3)
            expectStatus(try await client.call(.patch, "/v1/keys/\(keyId)", token: t.admin, json: ["total_usd_cap": 4]), .ok)
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: Self.charge + [("description", "5")]), .ok)

            let (_, parent) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            let child = try await client.call(.post, "/v1/child-keys", token: parent, json: ["label": "run", "total_usd_cap": 2, "run_id": "r-1"])
            let childToken = child.json["token"] as? String ?? ""
            let childId = (child.json["key"] as? [String: Any])?["id"] as? String ?? ""
            for i in 0..<2 {
                expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: childToken, form: Self.charge + [("description", "c\(i)")]), .ok)
            }
            let refused = try await client.proxy(.post, "/stripe/v1/charges", key: childToken, form: Self.charge + [("description", "c2")])
            XCTAssertEqual(refused.errorCode, "total_usd_cap_exceeded")
            // The child's rows carry its run and its parent chain, and the parent's filter finds them.
            let rows = try await client.call(.get, "/v1/audit?parent_key_id=\((child.json["key"] as? [String: Any])?["parent_key_id"] as? String ?? "")", token: t.admin)
            let data = rows.json["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(data.count, 3)
            XCTAssertTrue(data.allSatisfy { $0["key_id"] as? String == childId && $0["run_id"] as? String == "r-1" })
            XCTAssertTrue(data.allSatisfy { ($0["parent_key_ids"] as? [String])?.count == 1 })
        }
    }

    /// A parent's own narrower limits bind its child: cap named with the ancestor, endpoints narrowed after the
    /// child was minted, per-request max.
    func testTheParentsLimitsBindTheChildEvenAfterAnEdit() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (parentId, parent) = try await client.vaultKey(t, ["allowed_endpoints": ["POST /v1/charges", "POST /v1/customers"], "daily_usd_cap": 2])
            let child = try await client.call(.post, "/v1/child-keys", token: parent, json: ["label": "run", "daily_usd_cap": 2])
            let token = child.json["token"] as? String ?? ""
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: parent, form: Self.charge + [("description", "p")]), .ok)
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: Self.charge + [("description", "c1")]), .ok)
            let refused = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: Self.charge + [("description", "c2")])
            XCTAssertEqual(refused.errorCode, "daily_usd_cap_exceeded")
            XCTAssertTrue(refused.text.contains(parentId), "the denial names the ancestor whose cap it is: \(refused.text)")
            expectStatus(try await client.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "a@example.com")]), .ok)
            // An admin edit of the child cannot widen it past its parent either.
            let childId = (child.json["key"] as? [String: Any])?["id"] as? String ?? ""
            let widen = try await client.call(.patch, "/v1/keys/\(childId)", token: t.admin, json: ["daily_usd_cap": 5])
            expectStatus(widen, .badRequest)
            XCTAssertEqual(widen.errorField, "daily_usd_cap")
            expectStatus(try await client.call(.patch, "/v1/keys/\(parentId)", token: t.admin, json: ["allowed_endpoints": ["POST /v1/charges"]]), .ok)
            let narrowed = try await client.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "b@example.com")])
            expectStatus(narrowed, .forbidden)
            XCTAssertEqual(narrowed.errorCode, "endpoint_not_allowed")
            let tz = try await client.call(.patch, "/v1/keys/\(parentId)", token: t.admin, json: ["timezone": "Europe/Paris"])
            XCTAssertEqual(tz.errorField, "timezone", "a key with children keeps its time zone")
        }
    }

    /// Revoking a parent stops its children and grandchildren on their next request, on either replica; revoking a
    /// child leaves the parent alone; a revoked or expired parent cannot mint.
    func testCascadeRevocationAndExpiryOnBothReplicas() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { first in
            try await h.run { second in
                let t = try await first.tenantWithCredentials()
                let (rootId, root) = try await first.vaultKey(t, ["allowed_endpoints": ["POST /v1/customers"]])
                let calls = NIOLockedValueBox(0)
                /// A call that moves no money, a new body each time (so no duplicate guard answers it).
                @Sendable func call(_ client: any TestClientProtocol, _ token: String) async throws -> HTTPResult {
                    let n = calls.withLockedValue { $0 += 1; return $0 }
                    return try await client.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "c\(n)@example.com")])
                }
                let child = try await first.call(.post, "/v1/child-keys", token: root, json: ["label": "child"])
                let childToken = child.json["token"] as? String ?? ""
                let childId = (child.json["key"] as? [String: Any])?["id"] as? String ?? ""
                let grand = try await second.call(.post, "/v1/child-keys", token: childToken, json: ["label": "grandchild"])
                expectStatus(grand, .created)
                XCTAssertEqual((grand.json["key"] as? [String: Any])?["ancestor_key_ids"] as? [String], [rootId, childId])
                let grandToken = grand.json["token"] as? String ?? ""
                let sibling = try await first.call(.post, "/v1/child-keys", token: root, json: ["label": "sibling"])
                let siblingToken = sibling.json["token"] as? String ?? ""
                let siblingId = (sibling.json["key"] as? [String: Any])?["id"] as? String ?? ""
                for client in [first, second] {
                    for token in [root, childToken, grandToken, siblingToken] {
                        expectStatus(try await call(client, token), .ok)
                    }
                }
                // Revoking one child: its subtree stops, the parent and the sibling go on.
                expectStatus(try await first.call(.post, "/v1/keys/\(childId)/revoke", token: t.admin), .ok)
                for client in [second, first] {
                    for token in [childToken, grandToken] {
                        let r = try await call(client, token)
                        expectStatus(r, .unauthorized)
                        XCTAssertEqual(r.errorCode, "vault_key_revoked")
                    }
                    expectStatus(try await call(client, root), .ok)
                    expectStatus(try await call(client, siblingToken), .ok)
                }
                let refusedMint = try await second.call(.post, "/v1/child-keys", token: grandToken, json: ["label": "x"])
                XCTAssertEqual(refusedMint.errorCode, "vault_key_revoked")
                // The parent expires: every descendant stops on its next request, and it cannot mint.
                // (An expiry is a time, so this one takes a short wait: set it 2 s ahead through the API, acknowledged by
                // both replicas, and let it pass.)
                let soon = ISO8601DateFormatter().string(from: Date().addingTimeInterval(2))
                expectStatus(try await first.call(.patch, "/v1/keys/\(rootId)", token: t.admin, json: ["expires_at": soon]), .ok)
                try await Task.sleep(for: .milliseconds(2100))
                for client in [second, first] {
                    let r = try await call(client, siblingToken)
                    XCTAssertEqual(r.errorCode, "vault_key_expired", r.text)
                    XCTAssertTrue(r.text.contains(rootId), r.text)
                }
                let expiredMint = try await first.call(.post, "/v1/child-keys", token: root, json: ["label": "x"])
                XCTAssertEqual(expiredMint.errorCode, "vault_key_expired")
                let siblingShown = try await first.call(.get, "/v1/keys/\(siblingId)", token: t.admin)
                XCTAssertEqual((siblingShown.json["key"] as? [String: Any])?["status"] as? String, "active",
                               "expiry is not a revocation: the child's own row is untouched")
                let audit = try await Ledger.audit(siblingId)
                XCTAssertEqual(audit.last?.errorCode, "vault_key_expired", "the denial is audited")
            }
        }
    }

    /// Depth and fan-out are bounded (configurable), and another tenant sees nothing of a tenant's key tree.
    func testDepthFanOutAndTenantIsolation() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run({ config in
            config.childKeys.maxDepth = 2
            config.childKeys.maxChildren = 3
        }) { client in
            let t = try await client.tenantWithCredentials()
            let (rootId, root) = try await client.vaultKey(t, ["allowed_endpoints": ["GET /v1/balance"]])
            var tokens: [String] = []
            for i in 0..<3 {
                let r = try await client.call(.post, "/v1/child-keys", token: root, json: ["label": "c\(i)"])
                expectStatus(r, .created)
                tokens.append(r.json["token"] as? String ?? "")
            }
            let fourth = try await client.call(.post, "/v1/child-keys", token: root, json: ["label": "c3"])
            expectStatus(fourth, .forbidden)
            XCTAssertEqual(fourth.errorCode, "child_key_limit_reached")
            let grand = try await client.call(.post, "/v1/child-keys", token: tokens[0], json: ["label": "g"])
            expectStatus(grand, .created)
            let tooDeep = try await client.call(.post, "/v1/child-keys", token: grand.json["token"] as? String ?? "", json: ["label": "gg"])
            expectStatus(tooDeep, .forbidden)
            XCTAssertEqual(tooDeep.errorCode, "child_key_depth_exceeded")

            let shown = try await client.call(.get, "/v1/keys/\(rootId)", token: t.admin)
            let children = shown.json["children"] as? [String: Any]
            XCTAssertEqual(children?["count"] as? Int, 3)
            XCTAssertEqual(children?["active"] as? Int, 3)
            let page = try await client.call(.get, "/v1/keys/\(rootId)/children?limit=2", token: t.admin)
            XCTAssertEqual((page.json["data"] as? [[String: Any]])?.count, 2)
            let cursor = page.json["next_cursor"] as? String ?? ""
            let rest = try await client.call(.get, "/v1/keys/\(rootId)/children?limit=2&cursor=\(cursor)", token: t.admin)
            XCTAssertEqual((rest.json["data"] as? [[String: Any]])?.count, 1)

            // Another tenant: not its key, not its children, not its audit rows; a vault key is no admin token.
            let other = try await client.tenantWithCredentials()
            expectStatus(try await client.call(.get, "/v1/keys/\(rootId)/children", token: other.admin), .notFound)
            expectStatus(try await client.call(.get, "/v1/keys/\(rootId)", token: other.admin), .notFound)
            let theirAudit = try await client.call(.get, "/v1/audit?parent_key_id=\(rootId)", token: other.admin)
            XCTAssertEqual((theirAudit.json["data"] as? [[String: Any]])?.count, 0)
            expectStatus(try await client.call(.get, "/v1/keys/\(rootId)/children", token: root), .unauthorized)
            let (_, otherKey) = try await client.vaultKey(other, ["allowed_endpoints": ["GET /v1/balance"]])
            let minted = try await client.call(.post, "/v1/child-keys", token: otherKey, json: ["label": "theirs"])
            let theirKeys = try await client.call(.get, "/v1/keys", token: other.admin).json["data"] as? [[String: Any]]
            XCTAssertEqual((minted.json["key"] as? [String: Any])?["ancestor_key_ids"] as? [String],
                           [theirKeys?.first?["id"] as? String ?? ""], "a key mints only under itself")
        }
    }

    static func counted(_ keyId: String, period: String) async throws -> Int64 {
        try await TestDatabase.withClient { db in
            var total: Int64 = 0
            for try await n in try await db.query(
                "SELECT COALESCE(sum(counted_micros), 0)::bigint FROM spend_counters WHERE key_id = \(keyId) AND period = \(period)"
            ).decode(Int64.self) { total = n }
            return total
        }
    }
}
