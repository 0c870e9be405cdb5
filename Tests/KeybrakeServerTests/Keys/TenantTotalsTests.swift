import Foundation
import HTTPTypes
import HummingbirdTesting
import XCTest

/// The rest of issue 26's doors: totals per tenant for keys and dashboard sessions, `/v1/spend` in pages, and the
/// dashboard's admin-tokens page.
final class TenantTotalsTests: XCTestCase {
    func testKeysPastTheTenantTotalAre422UntilOneIsRevoked() async throws {
        try await TestApp.run({ $0.maxKeysPerTenant = 2 }) { client in
            let (_, admin) = try await client.signup()
            let (first, parent) = try await client.createKey(admin: admin)
            _ = try await client.createKey(admin: admin)
            let full = try await client.call(.post, "/v1/keys", token: admin,
                                             json: ["vendor": "stripe", "label": "third", "allowed_endpoints": ["POST /v1/charges"], "daily_usd_cap": 1])
            XCTAssertEqual(full.status.code, 422, full.text)
            XCTAssertEqual(full.errorCode, "tenant_limit_reached")
            // Child keys are bounded per parent, not by this total.
            let child = try await client.execute(uri: "/v1/child-keys", method: .post,
                                                 headers: [.authorization: "Bearer \(parent)", .contentType: "application/json"],
                                                 body: .init(data: try JSONSerialization.data(withJSONObject: ["label": "run"])))
            XCTAssertEqual(child.status, .created, String(buffer: child.body))
            expectStatus(try await client.call(.post, "/v1/keys/\(first)/revoke", token: admin), .ok)
            _ = try await client.createKey(admin: admin)
        }
    }

    func testSigningInPastTheSessionTotalIsRefusedWithAMessage() async throws {
        try await TestApp.run({ $0.maxSessionsPerTenant = 1 }) { client in
            let (_, admin) = try await client.signup()
            var first = DashboardBrowser(client)
            let signedIn = try await first.signIn(admin)
            XCTAssertEqual(signedIn.status, .seeOther, signedIn.text)
            var second = DashboardBrowser(client)
            let refused = try await second.signIn(admin)
            XCTAssertEqual(refused.status.code, 422, refused.text)
            XCTAssertTrue(refused.text.contains("dashboard sessions open"), refused.text)
            expectStatus(try await first.get("/dashboard/keys"), .ok, "the open session is untouched")
            // Signing out frees the place.
            let csrf = try await first.csrf()
            _ = try await first.post("/dashboard/logout", [("csrf", csrf)])
            let again = try await second.signIn(admin)
            XCTAssertEqual(again.status, .seeOther, again.text)
        }
    }

    func testSpendIsListedInPagesByKeyAndByLabel() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            var ids: [String] = []
            for label in ["b-agent", "a-agent", "b-agent"] { ids.append(try await client.createKey(admin: admin, ["label": label]).id) }
            let first = try await client.call(.get, "/v1/spend?limit=2", token: admin)
            expectStatus(first, .ok)
            XCTAssertEqual((first.json["data"] as? [[String: Any]])?.compactMap { $0["key_id"] as? String }, Array(ids.prefix(2)))
            let cursor = try XCTUnwrap(first.json["next_cursor"] as? String)
            let second = try await client.call(.get, "/v1/spend?limit=2&cursor=\(cursor)", token: admin)
            XCTAssertEqual((second.json["data"] as? [[String: Any]])?.compactMap { $0["key_id"] as? String }, [ids[2]])
            XCTAssertTrue(second.json["next_cursor"] is NSNull, second.text)

            let labels = try await client.call(.get, "/v1/spend?group_by=label&limit=1", token: admin)
            let row = (labels.json["data"] as? [[String: Any]])?.first
            XCTAssertEqual(row?["label"] as? String, "a-agent")
            let labelCursor = try XCTUnwrap(labels.json["next_cursor"] as? String)
            let rest = try await client.call(.get, "/v1/spend?group_by=label&limit=1&cursor=\(labelCursor)", token: admin)
            let last = (rest.json["data"] as? [[String: Any]])?.first
            XCTAssertEqual(last?["label"] as? String, "b-agent")
            XCTAssertEqual(last?["keys"] as? Int, 2, "a label's keys are never split across pages")
            XCTAssertTrue(rest.json["next_cursor"] is NSNull)

            let crossed = try await client.call(.get, "/v1/spend?group_by=key&cursor=\(labelCursor)", token: admin)
            XCTAssertEqual(crossed.status, .badRequest)
            XCTAssertEqual(crossed.errorField, "cursor")
            let tooLong = try await client.call(.get, "/v1/spend?limit=501", token: admin)
            XCTAssertEqual(tooLong.errorField, "limit")
        }
    }

    func testTheDashboardListsAdminTokensAndRevokesTheOthersEndingTheirSessions() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            let minted = try await client.call(.post, "/v1/admin-tokens", token: admin, json: ["label": "leaked-copy"])
            let other = try XCTUnwrap(minted.json["token"] as? String)
            var mine = DashboardBrowser(client)
            try await mine.signIn(admin)
            var theirs = DashboardBrowser(client)
            try await theirs.signIn(other)
            expectStatus(try await theirs.get("/dashboard/keys"), .ok)

            let page = try await mine.get("/dashboard/admin-tokens")
            expectStatus(page, .ok)
            XCTAssertTrue(page.text.contains("leaked-copy"), page.text)
            XCTAssertTrue(page.text.contains("this session"))
            XCTAssertFalse(page.text.contains("kb_admin_"), "no secret on the page")
            let csrf = try XCTUnwrap(DashboardBrowser.field(page.text, "csrf"))
            let done = try await mine.post("/dashboard/admin-tokens/revoke-others", [("csrf", csrf)])
            XCTAssertEqual(done.status, .seeOther)

            expectStatus(try await client.call(.get, "/v1/tenant", token: other), .unauthorized)
            let ended = try await theirs.get("/dashboard/keys")
            XCTAssertNotEqual(ended.status, .ok, "the revoked token's session has ended")
            expectStatus(try await mine.get("/dashboard/keys"), .ok)
            let after = try await mine.get("/dashboard/admin-tokens")
            XCTAssertFalse(after.text.contains("leaked-copy"))
        }
    }
}
