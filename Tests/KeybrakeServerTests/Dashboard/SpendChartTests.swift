import Foundation
import HTTPTypes
import HummingbirdTesting
import XCTest

/// The overview's chart: server-rendered SVG, stacked by label, labels escaped, no script needed.
final class SpendChartTests: XCTestCase {
    func testOverviewDrawsTheLast30DaysStackedByLabel() async throws {
        let harness = try await ProxyHarness.start()
        defer { harness.fake.stop() }
        try await harness.run { client in
            let tenant = try await client.tenantWithCredentials()
            let (_, a) = try await client.vaultKey(tenant, ["daily_usd_cap": 100, "label": "billing <agent>"])
            let (_, b) = try await client.vaultKey(tenant, ["daily_usd_cap": 100, "label": "refunds"])
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: a, form: [("amount", "300"), ("currency", "usd")]), .ok)
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: b, form: [("amount", "150"), ("currency", "usd")]), .ok)
            var browser = DashboardBrowser(client)
            try await browser.signIn(tenant.admin)
            let page = try await browser.get("/dashboard")
            XCTAssertEqual(page.status, .ok)
            let html = page.text
            XCTAssertTrue(html.contains("<svg viewBox=\"0 0 760 240\""), html)
            XCTAssertEqual(html.components(separatedBy: "<rect class=\"c").count - 1, 2, "one bar segment per label today")
            XCTAssertTrue(html.contains("billing &lt;agent&gt;: $3.00"), "the segment's title names label and amount, escaped")
            XCTAssertTrue(html.contains("total $4.50"), html)
            XCTAssertFalse(html.contains("<agent>"))
        }
    }

    /// A key's page: today by hour and 30 days by day, the daily cap drawn as a line; a period without a cap draws no
    /// bar (a full bar read as "cap reached").
    func testKeyPageChartsDrawTheCapAndAnUncappedPeriodHasNoBar() async throws {
        let harness = try await ProxyHarness.start()
        defer { harness.fake.stop() }
        try await harness.run { client in
            let tenant = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(tenant, ["daily_usd_cap": 10])
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "300"), ("currency", "usd")]), .ok)
            var browser = DashboardBrowser(client)
            try await browser.signIn(tenant.admin)
            let html = try await browser.get("/dashboard/keys/\(keyId)").text
            XCTAssertEqual(html.components(separatedBy: "<figure class=\"chart\">").count - 1, 2, html)
            XCTAssertEqual(html.components(separatedBy: "class=\"capline-label\"").count - 1, 2)
            XCTAssertTrue(html.contains("daily cap $10.00"), html)
            XCTAssertTrue(html.contains("Today by hour (UTC)"))
            // Today, this month and lifetime: only today has a cap (no monthly or lifetime cap on this key).
            let table = html.components(separatedBy: "id=\"key-spend\"").last?.components(separatedBy: "</table>").first ?? ""
            XCTAssertEqual(table.components(separatedBy: "<svg class=\"bar").count - 1, 1, table)
            XCTAssertEqual(table.components(separatedBy: "<span class=\"muted\">no cap</span>").count - 1, 2, table)
        }
    }
}
