import Foundation
import HTTPTypes
import HummingbirdTesting
import XCTest

/// /dashboard/webhooks: add an endpoint (secret shown once), send a test ping and see its delivery, rotate.
final class WebhooksPageTests: XCTestCase {
    func testAddTestAndRotateThroughTheDashboard() async throws {
        try await TestApp.run({ $0.webhooks.deliver = false }) { client in
            let (_, admin) = try await client.signup()
            var browser = DashboardBrowser(client)
            try await browser.signIn(admin)
            let empty = try await browser.get("/dashboard/webhooks")
            XCTAssertEqual(empty.status, .ok, empty.text)
            XCTAssertTrue(empty.text.contains("No webhook endpoints yet."))
            let csrf = try await browser.csrf()

            let refused = try await browser.post("/dashboard/webhooks", [("csrf", csrf), ("url", "http://10.0.0.1/x")])
            XCTAssertEqual(refused.status, .badRequest)
            XCTAssertTrue(refused.text.contains("https"), refused.text)
            let noCsrf = try await browser.post("/dashboard/webhooks", [("url", "https://hooks.example.com/a")])
            XCTAssertNotEqual(noCsrf.status, .created)

            let added = try await browser.post("/dashboard/webhooks", [("csrf", csrf), ("url", "https://hooks.example.com/a"),
                                                                       ("description", "ops <team>"), ("event_key.cap.reached", "on")])
            XCTAssertEqual(added.status, .created, added.text)
            let secret = DashboardBrowser.secret(added.text)
            XCTAssertTrue(secret.hasPrefix("whsec_"), added.text)
            let page = try await browser.get("/dashboard/webhooks")
            XCTAssertFalse(page.text.contains(secret), "the secret is shown once")
            XCTAssertTrue(page.text.contains("ops &lt;team&gt;"))
            XCTAssertTrue(page.text.contains("key.cap.reached"))
            let id = page.text.components(separatedBy: "id=\"endpoint-").dropFirst().first?.prefix { $0 != "\"" } ?? ""
            XCTAssertTrue(id.hasPrefix("whe_"), page.text)

            let tested = try await browser.post("/dashboard/webhooks/\(id)/test", [("csrf", csrf)])
            XCTAssertEqual(tested.location, "/dashboard/webhooks?notice=webhook_test_queued")
            let after = try await browser.get("/dashboard/webhooks")
            XCTAssertTrue(after.text.contains("<td>ping</td><td>pending</td>"), after.text)

            let rotated = try await browser.post("/dashboard/webhooks/\(id)/rotate", [("csrf", csrf)])
            XCTAssertEqual(rotated.status, .ok, rotated.text)
            let newSecret = DashboardBrowser.secret(rotated.text)
            XCTAssertTrue(newSecret.hasPrefix("whsec_") && newSecret != secret)
            XCTAssertTrue(rotated.text.contains("previous secret keeps signing"))

            let (_, stranger) = try await client.signup(name: "Other")
            var other = DashboardBrowser(client)
            try await other.signIn(stranger)
            let otherCsrf = try await other.csrf()
            let foreign = try await other.post("/dashboard/webhooks/\(id)/rotate", [("csrf", otherCsrf)])
            XCTAssertEqual(foreign.status, .notFound)
        }
    }
}

extension DashboardBrowser {
    /// The secret on a "shown once" page.
    static func secret(_ html: String) -> String {
        guard let r = html.range(of: "id=\"webhook-secret\">") else { return "" }
        return String(html[r.upperBound...].prefix { $0 != "<" })
    }
}
