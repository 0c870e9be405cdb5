import Foundation
import HTTPTypes
import XCTest

/// The dashboard's key form hashes a token like `POST /v1/keys` does, so it counts against the same per-tenant
/// creation limit (DESIGN §4: one tenant's key creation cannot starve another's first request).
final class DashboardKeyCreationLimitTests: XCTestCase {
    func testDashboardKeyCreationSharesTheAPIsPerTenantLimit() async throws {
        try await TestApp.run({ $0.keyCreationsPerMinutePerTenant = 3 }) { client in
            let (_, admin) = try await client.signup()
            var browser = DashboardBrowser(client)
            try await browser.signIn(admin)
            let csrf = try await browser.csrf()
            func createThroughTheForm(_ label: String) async throws -> HTTPResult {
                try await browser.post("/dashboard/keys", [("csrf", csrf), ("vendor", "stripe"), ("label", label),
                                                           ("allowed_endpoints", "POST /v1/charges"), ("daily_usd_cap", "5")])
            }
            _ = try await client.createKey(admin: admin)
            for label in ["form-1", "form-2"] {
                let created = try await createThroughTheForm(label)
                XCTAssertEqual(created.status, .created, created.text)
            }
            // The API's one and the form's two used the tenant's three: the form is refused, and so is the API.
            let limited = try await createThroughTheForm("form-3")
            XCTAssertEqual(limited.status, .tooManyRequests, limited.text)
            XCTAssertNotNil(limited.headers[.retryAfter])
            XCTAssertTrue(limited.text.contains("too fast"), limited.text)
            XCTAssertTrue(limited.text.contains("value=\"form-3\""), "the refused form keeps what was typed")
            let api = try await client.call(.post, "/v1/keys", token: admin,
                                            json: ["vendor": "stripe", "label": "api-2", "allowed_endpoints": ["POST /v1/charges"], "daily_usd_cap": 5])
            expectStatus(api, .tooManyRequests)
            XCTAssertEqual(api.errorCode, "rate_limited")
            // Another tenant has its own allowance.
            let (_, other) = try await client.signup()
            _ = try await client.createKey(admin: other)
        }
    }
}
