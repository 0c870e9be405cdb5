import Foundation
import HTTPTypes
import HummingbirdTesting
import PostgresNIO
import TokenAuth
import XCTest

final class KeysTests: XCTestCase {
    func testIssuedKeyIsHashedAndTheTokenVerifies() async throws {
        let logs = LogCapture()
        let (keyId, token) = try await TestApp.run(logs: logs) { client in
            let (_, admin) = try await client.signup()
            let r = try await client.call(.post, "/v1/keys", token: admin, json: [
                "vendor": "stripe", "label": "billing-agent",
                "allowed_endpoints": ["POST /v1/charges", "GET /v1/charges/*", "refunds.create"],
                "daily_usd_cap": 500, "monthly_usd_cap": 5000, "max_request_usd": 100,
                "expires_at": "2099-07-01T00:00:00Z", "rate_limit_per_minute": 120, "timezone": "America/New_York",
            ])
            XCTAssertEqual(r.status, .created, r.text)
            let key = try XCTUnwrap(r.json["key"] as? [String: Any])
            XCTAssertEqual(key["status"] as? String, "active")
            XCTAssertEqual(key["daily_usd_cap"] as? Double, 500)
            XCTAssertEqual(key["max_request_usd"] as? Double, 100)
            XCTAssertEqual(key["uncapped"] as? Bool, false)
            XCTAssertEqual(key["expires_at"] as? String, "2099-07-01T00:00:00Z")
            XCTAssertEqual(key["timezone"] as? String, "America/New_York")
            XCTAssertEqual(key["auto_idempotency"] as? Bool, true)
            XCTAssertEqual(key["duplicate_window_seconds"] as? Int, 86400)
            let token = try XCTUnwrap(r.json["token"] as? String)
            XCTAssertTrue(token.hasPrefix("kb_vault_"))
            // The token is shown once: reading the key back never includes it.
            let shown = try await client.call(.get, "/v1/keys/\(key["id"] as? String ?? "")", token: admin)
            XCTAssertEqual(shown.status, .ok)
            XCTAssertFalse(shown.text.contains(token))
            XCTAssertFalse(shown.text.contains(String(token.suffix(43))))
            return (key["id"] as? String ?? "", token)
        }
        let hash = try await TestDatabase.withClient { db in
            var hashes: [String] = []
            for try await h in try await db.query("SELECT token_hash FROM vault_keys WHERE id = \(keyId)").decode(String.self) { hashes.append(h) }
            return hashes.first
        }
        let stored = try XCTUnwrap(hash)
        XCTAssertTrue(stored.hasPrefix("$argon2id$"))
        XCTAssertFalse(stored.contains(String(token.suffix(43))))
        XCTAssertTrue(Argon2id.verify(token, encoded: stored))
        var chars = Array(token)
        chars[20] = chars[20] == "x" ? "y" : "x"
        XCTAssertFalse(Argon2id.verify(String(chars), encoded: stored))
        XCTAssertFalse(logs.text.contains(String(token.suffix(43))), "vault token reached the log")
    }

    /// Each key and admin token costs an argon2 hash to create: creations are limited per tenant (429 with
    /// Retry-After), and one tenant's burst does not limit another's.
    func testKeyAndAdminTokenCreationIsRateLimitedPerTenant() async throws {
        try await TestApp.run({ $0.keyCreationsPerMinutePerTenant = 3; $0.adminTokensPerMinutePerTenant = 2 }) { client in
            let (_, admin) = try await client.signup()
            let (_, other) = try await client.signup(name: "Other")
            let body: [String: Any] = ["vendor": "stripe", "label": "a", "allowed_endpoints": ["POST /v1/charges"]]
            var statuses: [Int] = []
            for _ in 0..<4 { statuses.append(Int(try await client.call(.post, "/v1/keys", token: admin, json: body).status.code)) }
            XCTAssertEqual(statuses, [201, 201, 201, 429])
            let limited = try await client.call(.post, "/v1/keys", token: admin, json: body)
            XCTAssertEqual(limited.errorCode, "rate_limited")
            XCTAssertNotNil(limited.headers[.retryAfter])
            expectStatus(try await client.call(.post, "/v1/keys", token: other, json: body), .created)
            var tokens: [Int] = []
            for _ in 0..<3 { tokens.append(Int(try await client.call(.post, "/v1/admin-tokens", token: admin, json: ["label": "ci"]).status.code)) }
            XCTAssertEqual(tokens, [201, 201, 429])
        }
    }

    func testPolicyValidationNamesTheField() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            let base: [String: Any] = ["vendor": "stripe", "label": "agent", "allowed_endpoints": ["POST /v1/charges"]]
            let cases: [([String: Any], String)] = [
                (["vendor": "paypal"], "vendor"),
                (["allowed_endpoints": ["FETCH /v1/charges"]], "allowed_endpoints"),
                (["allowed_endpoints": ["POST v1/charges"]], "allowed_endpoints"),
                (["allowed_endpoints": ["POST /v1/**/refunds"]], "allowed_endpoints"),
                (["allowed_endpoints": ["charges.explode"]], "allowed_endpoints"),
                (["allowed_endpoints": []], "allowed_endpoints"),
                (["daily_usd_cap": -5], "daily_usd_cap"),
                (["daily_usd_cap": 10.001], "daily_usd_cap"),
                (["monthly_usd_cap": "12.345"], "monthly_usd_cap"),
                (["monthly_usd_cap": 0], "monthly_usd_cap"),
                (["max_request_usd": 0.0000001], "max_request_usd"),
                (["daily_usd_cap": 100, "monthly_usd_cap": 50], "daily_usd_cap"),
                (["expires_at": "2001-01-01T00:00:00Z"], "expires_at"),
                (["expires_at": "tomorrow"], "expires_at"),
                (["timezone": "Mars/Olympus"], "timezone"),
                (["rate_limit_per_minute": 0], "rate_limit_per_minute"),
                (["duplicate_window_seconds": -1], "duplicate_window_seconds"),
                (["allowed_stripe_accounts": ["not-an-account"]], "allowed_stripe_accounts"),
                (["label": ""], "label"),
                (["daily_cap": 100], "daily_cap"),
            ]
            for (override, field) in cases {
                let body = base.merging(override) { $1 }
                let r = try await client.call(.post, "/v1/keys", token: admin, json: body)
                XCTAssertEqual(r.status, .badRequest, "\(override): \(r.text)")
                XCTAssertEqual(r.errorCode, "invalid_request", "\(override)")
                XCTAssertEqual(r.errorField, field, "\(override): \(r.text)")
            }
            // Twilio keys cannot use Stripe aliases nor Stripe account lists.
            let twilio = try await client.call(.post, "/v1/keys", token: admin, json: [
                "vendor": "twilio", "label": "sms", "allowed_endpoints": ["charges.create"],
            ])
            XCTAssertEqual(twilio.errorField, "allowed_endpoints")
            // Exact cents survive: 0.29 is not 0.28999…
            let exact = try await client.call(.post, "/v1/keys", token: admin, json: base.merging(["daily_usd_cap": 0.29, "max_request_usd": 0.0083]) { $1 })
            XCTAssertEqual(exact.status, .created, exact.text)
            XCTAssertTrue(exact.text.contains("\"daily_usd_cap\":0.29"), exact.text)
            XCTAssertTrue(exact.text.contains("\"max_request_usd\":0.0083"), exact.text)
        }
    }

    func testKeyWithoutCapsIsReportedAsUncapped() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            let r = try await client.call(.post, "/v1/keys", token: admin, json: ["vendor": "resend", "label": "mailer", "allowed_endpoints": ["POST /emails"]])
            XCTAssertEqual(r.status, .created, r.text)
            XCTAssertEqual((r.json["key"] as? [String: Any])?["uncapped"] as? Bool, true)
            let list = try await client.call(.get, "/v1/keys", token: admin)
            let first = (list.json["data"] as? [[String: Any]])?.first
            XCTAssertEqual(first?["uncapped"] as? Bool, true)
            XCTAssertTrue(first?["daily_usd_cap"] is NSNull)
        }
    }

    func testPatchAppliesChangesAndNullClearsALimit() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            let (id, _) = try await client.createKey(admin: admin, ["monthly_usd_cap": 1000, "rate_limit_per_minute": 60])
            let lowered = try await client.call(.patch, "/v1/keys/\(id)", token: admin, json: ["daily_usd_cap": 20.5, "rate_limit_per_minute": NSNull()])
            XCTAssertEqual(lowered.status, .ok, lowered.text)
            let key = try XCTUnwrap(lowered.json["key"] as? [String: Any])
            XCTAssertEqual(key["daily_usd_cap"] as? Double, 20.5)
            XCTAssertEqual(key["monthly_usd_cap"] as? Double, 1000)
            XCTAssertTrue(key["rate_limit_per_minute"] is NSNull)
            XCTAssertEqual(key["label"] as? String, "billing-agent")

            let vendorChange = try await client.call(.patch, "/v1/keys/\(id)", token: admin, json: ["vendor": "twilio"])
            XCTAssertEqual(vendorChange.errorField, "vendor")
            let invalid = try await client.call(.patch, "/v1/keys/\(id)", token: admin, json: ["daily_usd_cap": 5000])
            XCTAssertEqual(invalid.errorField, "daily_usd_cap", "daily above monthly must be refused")
            let shown = try await client.call(.get, "/v1/keys/\(id)", token: admin)
            XCTAssertEqual((shown.json["key"] as? [String: Any])?["daily_usd_cap"] as? Double, 20.5, "a refused patch changes nothing")

            let revoked = try await client.call(.post, "/v1/keys/\(id)/revoke", token: admin)
            XCTAssertEqual(revoked.status, .ok)
            XCTAssertEqual((revoked.json["key"] as? [String: Any])?["status"] as? String, "revoked")
            XCTAssertFalse((revoked.json["key"] as? [String: Any])?["revoked_at"] is NSNull)
            let again = try await client.call(.post, "/v1/keys/\(id)/revoke", token: admin)
            XCTAssertEqual(again.status, .ok, "revoking twice is harmless")
            let patchRevoked = try await client.call(.patch, "/v1/keys/\(id)", token: admin, json: ["daily_usd_cap": 1])
            XCTAssertEqual(patchRevoked.status, .conflict)
            XCTAssertEqual(patchRevoked.errorCode, "key_revoked")
        }
    }

    func testTenantIsolationForKeys() async throws {
        try await TestApp.run { client in
            let a = try await client.signup(name: "A")
            let b = try await client.signup(name: "B")
            let (keyA, _) = try await client.createKey(admin: a.token)
            for (method, path, body) in [
                (HTTPRequest.Method.get, "/v1/keys/\(keyA)", nil as [String: Any]?),
                (.patch, "/v1/keys/\(keyA)", ["daily_usd_cap": 1_000_000]),
                (.post, "/v1/keys/\(keyA)/revoke", nil),
            ] {
                let r = try await client.call(method, path, token: b.token, json: body)
                XCTAssertEqual(r.status, .notFound, "\(method) \(path)")
                XCTAssertEqual(r.errorCode, "not_found")
            }
            let listB = try await client.call(.get, "/v1/keys", token: b.token)
            XCTAssertEqual((listB.json["data"] as? [Any])?.count, 0)
            let shownA = try await client.call(.get, "/v1/keys/\(keyA)", token: a.token)
            let keyJSON = shownA.json["key"] as? [String: Any]
            XCTAssertEqual(keyJSON?["status"] as? String, "active", "B's attempts changed nothing")
            XCTAssertEqual(keyJSON?["daily_usd_cap"] as? Double, 100)
        }
    }

    func testListPaginatesWithOpaqueCursors() async throws {
        try await TestApp.run { client in
            let a = try await client.signup(name: "A")
            let b = try await client.signup(name: "B")
            var created: [String] = []
            for i in 0..<5 { created.append(try await client.createKey(admin: a.token, ["label": "agent-\(i)"]).id) }
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let uri = "/v1/keys?limit=2" + (cursor.map { "&cursor=\($0)" } ?? "")
                let page = try await client.call(.get, uri, token: a.token)
                XCTAssertEqual(page.status, .ok, page.text)
                seen += (page.json["data"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                cursor = page.json["next_cursor"] as? String
                pages += 1
            } while cursor != nil && pages < 10
            XCTAssertEqual(pages, 3)
            XCTAssertEqual(seen, created.reversed(), "newest first, no duplicates, no gaps")

            let first = try await client.call(.get, "/v1/keys?limit=2", token: a.token)
            let aCursor = try XCTUnwrap(first.json["next_cursor"] as? String)
            let stolen = try await client.call(.get, "/v1/keys?cursor=\(aCursor)", token: b.token)
            XCTAssertEqual(stolen.status, .badRequest, "another tenant's cursor reveals nothing")
            XCTAssertEqual(stolen.errorField, "cursor")
            do { let r = try await client.call(.get, "/v1/keys?cursor=garbage!", token: a.token); XCTAssertEqual(r.errorField, "cursor") }
            do { let r = try await client.call(.get, "/v1/keys?limit=0", token: a.token); XCTAssertEqual(r.errorField, "limit") }
            do { let r = try await client.call(.get, "/v1/keys?limit=101", token: a.token); XCTAssertEqual(r.errorField, "limit") }
        }
    }
}
