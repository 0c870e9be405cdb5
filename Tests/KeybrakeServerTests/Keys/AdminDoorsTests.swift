import Foundation
import HTTPTypes
import HummingbirdTesting
import XCTest
@testable import Audit

/// The admin plane's doors of issue 26: text people read refuses control and bidi characters, key changes are
/// limited per tenant, revoking a revoked key announces nothing, CSV cells cannot become formulas or cells.
final class AdminDoorsTests: XCTestCase, @unchecked Sendable {
    func testControlAndBidiCharactersAreRefusedInLabelsNamesAndRunIds() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let bad = ["agent\u{202E}exe.txt", "a\u{0007}b", "line\nbreak", "x\u{2066}y", "c1\u{0085}"]
            for text in bad {
                let signup = try await client.call(.post, "/v1/tenants", json: ["name": text, "email": "a@b.co"])
                expectStatus(signup, .badRequest, "tenant name \(text.unicodeScalars.map { $0.value })")
                XCTAssertEqual(signup.errorField, "name")
            }
            let t = try await client.tenantWithCredentials()
            for text in bad {
                let key = try await client.call(.post, "/v1/keys", token: t.admin, json: ["vendor": "stripe", "label": text, "allowed_endpoints": ["POST /v1/charges"]])
                expectStatus(key, .badRequest)
                XCTAssertEqual(key.errorField, "label")
                let token = try await client.call(.post, "/v1/admin-tokens", token: t.admin, json: ["label": text])
                expectStatus(token, .badRequest)
            }
            let fine = try await client.call(.post, "/v1/keys", token: t.admin, json: ["vendor": "stripe", "label": "agent ünïcode ✓", "allowed_endpoints": ["POST /v1/charges"]])
            expectStatus(fine, .created)
            let (_, parent) = try await client.vaultKey(t, ["daily_usd_cap": 10])
            let child = try await client.execute(uri: "/v1/child-keys", method: .post, headers: [.authorization: "Bearer \(parent)", .contentType: "application/json"],
                                                 body: .init(data: try JSONSerialization.data(withJSONObject: ["label": "run", "run_id": "r\u{202E}1"])))
            XCTAssertEqual(child.status, .badRequest, String(buffer: child.body))
            // An agent's X-Keybrake-Run-Id: refused (and audited) rather than written into rows people read.
            let proxied = try await client.proxy(.post, "/stripe/v1/charges", key: parent, form: [("amount", "100"), ("currency", "usd")],
                                                 headers: ["X-Keybrake-Run-Id": "run\u{200F}1"])
            expectStatus(proxied, .badRequest)
        }
        XCTAssertTrue(h.fake.requests().isEmpty)
    }

    func testRevokingARevokedKeyAnnouncesNothingAndKeyChangesAreLimitedPerTenant() async throws {
        try await TestApp.run({ $0.keyChangesPerMinutePerTenant = 3 }) { client in
            let (_, admin) = try await client.signup()
            let (keyId, _) = try await client.createKey(admin: admin)
            func changes() async throws -> Int {
                try await TestDatabase.withClient { db in
                    var n = 0
                    for try await c in try await db.query("SELECT count(*)::int FROM key_changes WHERE key_ids @> ARRAY[\(keyId)]").decode(Int.self) { n = c }
                    return n
                }
            }
            expectStatus(try await client.call(.patch, "/v1/keys/\(keyId)", token: admin, json: ["daily_usd_cap": 50]), .ok)
            expectStatus(try await client.call(.post, "/v1/keys/\(keyId)/revoke", token: admin), .ok)
            let afterRevoke = try await changes()
            let again = try await client.call(.post, "/v1/keys/\(keyId)/revoke", token: admin)
            expectStatus(again, .ok)
            XCTAssertEqual((again.json["key"] as? [String: Any])?["status"] as? String, "revoked")
            let afterAgain = try await changes()
            XCTAssertEqual(afterAgain, afterRevoke, "a second revocation announces nothing")
            let limited = try await client.call(.post, "/v1/keys/\(keyId)/revoke", token: admin)
            expectStatus(limited, .tooManyRequests)
            XCTAssertNotNil(limited.headers[.retryAfter])
            // Another tenant's changes are its own.
            let (_, other) = try await client.signup(name: "Other")
            let (otherKey, _) = try await client.createKey(admin: other)
            expectStatus(try await client.call(.patch, "/v1/keys/\(otherKey)", token: other, json: ["daily_usd_cap": 5]), .ok)
        }
    }

    /// A leaked admin token minted others: the tenant lists its tokens (never their secrets), sees which is in use,
    /// and revokes every other one at once; their dashboard sessions end with them. Totals are bounded.
    func testAdminTokensAreListedAndTheOthersRevokedAtOnce() async throws {
        try await TestApp.run({ $0.maxAdminTokensPerTenant = 4 }) { client in
            let (_, admin) = try await client.signup()
            var minted: [String] = []
            for label in ["ci", "leaked-copy", "laptop"] {
                let r = try await client.call(.post, "/v1/admin-tokens", token: admin, json: ["label": label])
                expectStatus(r, .created)
                minted.append(r.json["token"] as? String ?? "")
            }
            let full = try await client.call(.post, "/v1/admin-tokens", token: admin, json: ["label": "one too many"])
            XCTAssertEqual(full.status.code, 422, full.text)
            XCTAssertEqual(full.errorCode, "tenant_limit_reached")
            _ = try await client.call(.get, "/v1/tenant", token: minted[1])
            let list = try await client.call(.get, "/v1/admin-tokens", token: admin)
            expectStatus(list, .ok)
            let rows = list.json["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(rows.count, 4)
            XCTAssertEqual(rows.filter { $0["current"] as? Bool == true }.count, 1)
            XCTAssertFalse(list.text.contains("kb_admin_"), "no secret is listed")
            XCTAssertFalse(list.text.contains("argon2"), "no hash is listed")
            XCTAssertNotNil(rows.first { $0["label"] as? String == "leaked-copy" }?["last_used_at"] as? String, "used tokens say when")
            let revoked = try await client.call(.post, "/v1/admin-tokens/revoke-others", token: admin)
            expectStatus(revoked, .ok)
            XCTAssertEqual((revoked.json["revoked"] as? [String])?.count, 3)
            for token in minted { expectStatus(try await client.call(.get, "/v1/tenant", token: token), .unauthorized) }
            expectStatus(try await client.call(.get, "/v1/tenant", token: admin), .ok)
            let left = try await client.call(.get, "/v1/admin-tokens", token: admin)
            XCTAssertEqual((left.json["data"] as? [Any])?.count, 1)
        }
    }

    func testCSVCellsCannotStartAFormulaOrSplitIntoCells() {
        XCTAssertEqual(CSV.escape("=SUM(A1)"), "'=SUM(A1)")
        XCTAssertEqual(CSV.escape("=\u{301}cmd"), "'=\u{301}cmd", "the first scalar decides, not the first grapheme")
        XCTAssertEqual(CSV.escape("-12.5"), "-12.5", "numbers stay numbers")
        XCTAssertEqual(CSV.escape("a;=cmd|' /C calc'!A0"), "\"a;=cmd|' /C calc'!A0\"", "a `;` separator is quoted")
        XCTAssertEqual(CSV.escape("tab\there"), "\"tab\there\"")
        XCTAssertEqual(CSV.escape("@x,\"y\""), "\"'@x,\"\"y\"\"\"")
        XCTAssertEqual(CSV.escape("plain"), "plain")
    }
}
