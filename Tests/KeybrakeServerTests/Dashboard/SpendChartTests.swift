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
}
