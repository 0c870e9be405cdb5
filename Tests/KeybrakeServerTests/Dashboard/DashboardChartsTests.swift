import Foundation
import HummingbirdTesting
import PostgresNIO
import XCTest

/// The spend charts (server-rendered SVG), the "no cap draws no bar" rule and the webhook endpoints pages.
final class DashboardChartsTests: XCTestCase {
    func testChartsDrawTheLedgerAndAPeriodWithoutACapDrawsNoBar() async throws {
        try await TestApp.run({ $0.webhooks.delivers = false }) { client in
            let (tenant, admin) = try await client.signup()
            let label = "<b>ops</b>"
            let (keyId, _) = try await client.createKey(admin: admin, ["label": label, "daily_usd_cap": 20])
            let today = ISO8601DateFormatter().string(from: Date()).prefix(10)
            let reservation = "aud_chart" + UUID().uuidString.prefix(8)
            try await TestDatabase.withClient { db in
                try await db.query("""
                    INSERT INTO reservations (id, tenant_id, key_id, amount_micros, day, month, state, settled_micros)
                    VALUES (\(reservation), \(tenant), \(keyId), 5000000, \(String(today))::date, date_trunc('month', now())::date, 'settled', 4500000)
                    """)
            }
            var browser = DashboardBrowser(client)
            try await browser.signIn(admin)
            let overview = try await browser.get("/dashboard")
            XCTAssertEqual(overview.status, .ok, overview.text)
            XCTAssertTrue(overview.text.contains("<svg id=\"spend-chart\""), overview.text)
            XCTAssertTrue(overview.text.contains("data-usd=\"4.50\""), "today's bar carries the settled amount")
            XCTAssertTrue(overview.text.contains("&lt;b&gt;ops&lt;/b&gt;"), "the label in the legend is escaped")
            XCTAssertFalse(overview.text.contains("<b>ops</b>"))

            let page = try await browser.get("/dashboard/keys/\(keyId)")
            XCTAssertEqual(page.status, .ok)
            XCTAssertTrue(page.text.contains("<svg id=\"key-hours-chart\""))
            XCTAssertTrue(page.text.contains("<svg id=\"key-days-chart\""))
            XCTAssertTrue(page.text.contains("class=\"caplabel\""), "the daily cap is drawn as a line")
            XCTAssertTrue(page.text.contains("daily cap $20.00"))
            // Today has a $20 cap: a bar. The month and the key's life have none: their text, no bar.
            XCTAssertEqual(page.text.components(separatedBy: "<svg class=\"bar\"").count - 1, 1, page.text)
            XCTAssertEqual(page.text.components(separatedBy: "<span class=\"nocap muted\">").count - 1, 2, page.text)
        }
    }

    func testWebhookEndpointsPageAddsTestsAndRotates() async throws {
        try await TestApp.run({ $0.webhooks.delivers = false }) { client in
            let (_, admin) = try await client.signup()
            var browser = DashboardBrowser(client)
            try await browser.signIn(admin)
            let csrf = try await browser.csrf()
            let refused = try await browser.post("/dashboard/webhooks", [("csrf", csrf), ("url", "http://127.0.0.1/x")])
            XCTAssertEqual(refused.status, .badRequest)
            XCTAssertTrue(refused.text.contains("https"), refused.text)
            let added = try await browser.post("/dashboard/webhooks", [("csrf", csrf), ("url", "https://hooks.example.com/kb"),
                                                                       ("ev_key.cap.reached", "1"), ("description", "ops")])
            XCTAssertEqual(added.status, .ok, added.text)
            let secret = try XCTUnwrap(DashboardBrowser.field(added.text, "webhook-secret\" class=\"mono\" readonly") ?? Self.secret(in: added.text))
            XCTAssertTrue(secret.hasPrefix("whsec_"))
            let list = try await browser.get("/dashboard/webhooks")
            XCTAssertTrue(list.text.contains("https://hooks.example.com/kb") && list.text.contains("key.cap.reached"), list.text)
            XCTAssertFalse(list.text.contains(secret), "the secret is shown once")
            let id = try XCTUnwrap(list.text.range(of: "data-endpoint-id=\"").map { String(list.text[$0.upperBound...].prefix(24)) })
            let tested = try await browser.post("/dashboard/webhooks/\(id)/test", [("csrf", csrf)])
            XCTAssertEqual(tested.status.code / 100, 3)
            let detail = try await browser.get("/dashboard/webhooks/\(id)")
            XCTAssertTrue(detail.text.contains("<code>ping</code>") && detail.text.contains("not tried yet"), detail.text)
            let rotated = try await browser.post("/dashboard/webhooks/\(id)/rotate", [("csrf", csrf)])
            let second = try XCTUnwrap(Self.secret(in: rotated.text))
            XCTAssertNotEqual(second, secret)
            let forged = try await browser.post("/dashboard/webhooks/\(id)/rotate", [("csrf", "nope")])
            XCTAssertEqual(forged.status, .forbidden)
        }
    }

    static func secret(in html: String) -> String? {
        guard let r = html.range(of: "value=\"whsec_") else { return nil }
        return "whsec_" + html[r.upperBound...].prefix { $0 != "\"" }
    }
}
