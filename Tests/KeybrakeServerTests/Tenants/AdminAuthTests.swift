import Foundation
import HTTPLayer
import HTTPTypes
import HummingbirdTesting
import PostgresNIO
import XCTest

final class AdminAuthTests: XCTestCase {
    func testSignupReturnsAWorkingAdminTokenOnce() async throws {
        try await TestApp.run { client in
            let r = try await client.call(.post, "/v1/tenants", json: ["name": "Acme", "email": "ops@acme.test"])
            XCTAssertEqual(r.status, .created)
            let token = try XCTUnwrap(r.json["admin_token"] as? String)
            XCTAssertTrue(token.hasPrefix("kb_admin_"))
            let tenant = try XCTUnwrap(r.json["tenant"] as? [String: Any])
            XCTAssertTrue((tenant["id"] as? String ?? "").hasPrefix("ten_"))
            XCTAssertEqual(tenant["plan"] as? String, "free")
            XCTAssertNotNil(r.headers[.init("Keybrake-Request-Id")!])

            let me = try await client.call(.get, "/v1/tenant", token: token)
            XCTAssertEqual(me.status, .ok, me.text)
            XCTAssertEqual((me.json["tenant"] as? [String: Any])?["id"] as? String, tenant["id"] as? String)
            let usage = try XCTUnwrap(me.json["usage"] as? [String: Any])
            XCTAssertEqual(usage["quota"] as? Int, 1000)
            XCTAssertEqual(usage["requests"] as? Int, 0)
        }
    }

    func testWrongMalformedMissingAndDeletedAdminTokensAreRejected() async throws {
        try await TestApp.run { client in
            let (_, token) = try await client.signup()
            // One changed character in the secret part.
            var chars = Array(token)
            chars[chars.count - 1] = chars[chars.count - 1] == "A" ? "B" : "A"
            let tampered = String(chars)
            for bad in [tampered, "kb_admin_nope", "Bearer-less", "kb_vault_" + token.dropFirst(9)] {
                let r = try await client.call(.get, "/v1/tenant", token: bad)
                XCTAssertEqual(r.status, .unauthorized, bad)
                XCTAssertEqual(r.errorCode, "admin_token_invalid")
                XCTAssertEqual(r.headers[.init("Keybrake-Error-Code")!], "admin_token_invalid")
            }
            let missing = try await client.call(.get, "/v1/keys")
            XCTAssertEqual(missing.status, .unauthorized)
            XCTAssertEqual(missing.errorCode, "admin_token_invalid")

            // A second token works; deleting it makes it fail on the very next request.
            let created = try await client.call(.post, "/v1/admin-tokens", token: token, json: ["label": "ci"])
            XCTAssertEqual(created.status, .created, created.text)
            let second = try XCTUnwrap(created.json["token"] as? String)
            let secondId = try XCTUnwrap((created.json["admin_token"] as? [String: Any])?["id"] as? String)
            expectStatus(try await client.call(.get, "/v1/tenant", token: second), .ok)
            expectStatus(try await client.call(.delete, "/v1/admin-tokens/\(secondId)", token: token), .noContent)
            let afterDelete = try await client.call(.get, "/v1/tenant", token: second)
            XCTAssertEqual(afterDelete.status, .unauthorized)
            XCTAssertEqual(afterDelete.errorCode, "admin_token_invalid")
            // The first token is unaffected; deleting again is 404.
            expectStatus(try await client.call(.get, "/v1/tenant", token: token), .ok)
            expectStatus(try await client.call(.delete, "/v1/admin-tokens/\(secondId)", token: token), .notFound)
        }
    }

    func testAdminTokensAreStoredAsArgon2idHashes() async throws {
        let token = try await TestApp.run { client in try await client.signup().token }
        let publicId = String(token.dropFirst("kb_admin_".count).prefix(16))
        let stored = try await TestDatabase.withClient { db in
            var hashes: [String] = []
            for try await h in try await db.query("SELECT token_hash FROM admin_tokens WHERE id = \("atk_" + publicId)").decode(String.self) {
                hashes.append(h)
            }
            return hashes
        }
        XCTAssertEqual(stored.count, 1)
        XCTAssertTrue(stored[0].hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"), stored[0])
        XCTAssertFalse(stored[0].contains(token.suffix(43)))
    }

    func testSignupValidationAndRateLimit() async throws {
        try await TestApp.run({ $0.signupsPerMinutePerClient = 4 }) { client in
            let extra = try await client.call(.post, "/v1/tenants", json: ["name": "Acme", "email": "a@b.co", "plan": "pro"])
            XCTAssertEqual(extra.status, .badRequest)
            XCTAssertEqual(extra.errorField, "plan")
            let noEmail = try await client.call(.post, "/v1/tenants", json: ["name": "Acme"])
            XCTAssertEqual(noEmail.status, .badRequest)
            XCTAssertEqual(noEmail.errorField, "email")
            let nul = try await client.call(.post, "/v1/tenants", json: ["name": "Ac\u{0}me", "email": "a@b.co"])
            XCTAssertEqual(nul.status, .badRequest)
            XCTAssertEqual(nul.errorField, "name")
            let badEmail = try await client.call(.post, "/v1/tenants", json: ["name": "Acme", "email": "not-an-email"])
            XCTAssertEqual(badEmail.errorField, "email")
            // Requests from this client count against the limit whatever their outcome; the fifth is refused.
            let limited = try await client.call(.post, "/v1/tenants", json: ["name": "Acme", "email": "a@b.co"])
            XCTAssertEqual(limited.status, .tooManyRequests)
            XCTAssertEqual(limited.errorCode, "rate_limited")
            XCTAssertNotNil(limited.headers[.retryAfter])
        }
    }

    func testMalformedBodiesGetJSONErrors() async throws {
        try await TestApp.run { client in
            for raw in ["", "{", "[1,2]", "\"str\"", "{\"name\": 5, \"email\": \"a@b.co\"}"] {
                let r = try await client.call(.post, "/v1/tenants", rawBody: raw)
                XCTAssertEqual(r.status, .badRequest, raw)
                XCTAssertEqual(r.errorCode, "invalid_request", raw)
            }
            let huge = "{\"name\":\"" + String(repeating: "x", count: 70_000) + "\",\"email\":\"a@b.co\"}"
            let tooLarge = try await client.call(.post, "/v1/tenants", rawBody: huge)
            XCTAssertEqual(tooLarge.status, .contentTooLarge)
            XCTAssertEqual(tooLarge.errorCode, "body_too_large")
            let unknownRoute = try await client.call(.get, "/v1/nothing-here")
            XCTAssertEqual(unknownRoute.status, .notFound)
            XCTAssertEqual(unknownRoute.errorCode, "not_found")
            let notFound = try await client.call(.get, "/nothing-here")
            XCTAssertEqual(notFound.status, .notFound)
            XCTAssertEqual(notFound.errorCode, "not_found")
        }
    }

    func testOperatorChangesPlan() async throws {
        try await TestApp.run { client in
            let (tenantId, token) = try await client.signup()
            let noAuth = try await client.call(.post, "/v1/operator/tenants/\(tenantId)/plan", json: ["plan": "pro"])
            XCTAssertEqual(noAuth.status, .unauthorized)
            let tenantToken = try await client.call(.post, "/v1/operator/tenants/\(tenantId)/plan", token: token, json: ["plan": "pro"])
            XCTAssertEqual(tenantToken.status, .unauthorized, "a tenant's admin token is not the operator token")
            let badPlan = try await client.call(.post, "/v1/operator/tenants/\(tenantId)/plan", token: "operator-secret-for-tests", json: ["plan": "gold"])
            XCTAssertEqual(badPlan.errorField, "plan")
            let unknown = try await client.call(.post, "/v1/operator/tenants/ten_nope/plan", token: "operator-secret-for-tests", json: ["plan": "pro"])
            XCTAssertEqual(unknown.status, .notFound)
            let ok = try await client.call(.post, "/v1/operator/tenants/\(tenantId)/plan", token: "operator-secret-for-tests", json: ["plan": "pro"])
            XCTAssertEqual(ok.status, .ok, ok.text)
            let me = try await client.call(.get, "/v1/tenant", token: token)
            XCTAssertEqual((me.json["tenant"] as? [String: Any])?["plan"] as? String, "pro")
            XCTAssertTrue((me.json["usage"] as? [String: Any])?["quota"] is NSNull)
        }
    }

    func testHealthAndReadiness() async throws {
        try await TestApp.run { client in
            expectStatus(try await client.call(.get, "/health"), .ok)
            let ready = try await client.call(.get, "/ready")
            XCTAssertEqual(ready.status, .ok)
            XCTAssertEqual(ready.json["status"] as? String, "ready")
        }
        // A database nobody listens on: not ready, and a clear 503 rather than a hang or crash.
        try await TestApp.run({ $0.databaseURL.port = 1 }) { client in
            let ready = try await client.call(.get, "/ready")
            XCTAssertEqual(ready.status, .serviceUnavailable)
            XCTAssertEqual(ready.json["reason"] as? String, "database_unreachable", ready.text)
            XCTAssertEqual(ready.headers[.keybrakeErrorCode], "unavailable")
        }
    }
}
