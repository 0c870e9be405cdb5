import Foundation
import HTTPTypes
import HummingbirdTesting
import KeybrakeServer
import XCTest

/// GET /v1/spend/series: the ledger per bucket and group, exact in micro-USD, settled / held / unknown apart.
final class SpendSeriesTests: XCTestCase {
    func testDailySeriesIsExactPerKeyLabelAndVendorWithChildrenUnderTheirRoot() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (aId, aToken) = try await client.vaultKey(t, ["daily_usd_cap": 100, "label": "billing"])
            let (_, bToken) = try await client.vaultKey(t, ["daily_usd_cap": 100, "label": "billing"])
            for (token, cents, n) in [(aToken, "123", 1), (aToken, "1", 2), (bToken, "250", 3)] {
                expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token,
                                                    form: [("amount", cents), ("currency", "usd"), ("description", "s\(n)")]), .ok)
            }
            let mint = try await client.call(.post, "/v1/child-keys", token: aToken, json: ["label": "run", "expires_in_seconds": 600])
            let childToken = mint.json["token"] as? String ?? ""
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: childToken, form: [("amount", "7"), ("currency", "usd")]), .ok)
            h.fake.setFault(.status(500))
            _ = try await client.proxy(.post, "/stripe/v1/charges", key: aToken, form: [("amount", "1000"), ("currency", "usd"), ("description", "lost")])
            h.fake.setFault(.none)

            let byKey = try await client.call(.get, "/v1/spend/series?granularity=day&group_by=key", token: t.admin)
            XCTAssertEqual(byKey.status, .ok, byKey.text)
            let rows = byKey.json["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(rows.count, 2, byKey.text)
            let a = rows.first { $0["group"] as? String == aId }
            XCTAssertEqual((a?["settled_micros"] as? NSNumber)?.int64Value, 1_310_000, "$1.23 + $0.01 + the child's $0.07")
            XCTAssertEqual((a?["outcome_unknown_micros"] as? NSNumber)?.int64Value, 10_000_000)
            XCTAssertEqual((a?["spent_micros"] as? NSNumber)?.int64Value, 11_310_000)
            XCTAssertEqual(a?["label"] as? String, "billing")

            let byLabel = try await client.call(.get, "/v1/spend/series?group_by=label", token: t.admin)
            let labels = byLabel.json["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(labels.count, 1, byLabel.text)
            XCTAssertEqual((labels.first?["settled_micros"] as? NSNumber)?.int64Value, 3_810_000)

            let hourly = try await client.call(.get, "/v1/spend/series?granularity=hour&group_by=vendor&key_id=\(aId)", token: t.admin)
            let hours = hourly.json["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(hours.reduce(0) { $0 + ((($1["spent_micros"] as? NSNumber)?.int64Value) ?? 0) }, 11_310_000, hourly.text)
            XCTAssertTrue((hours.first?["bucket"] as? String ?? "").hasSuffix(":00"), hourly.text)

            let csv = try await client.execute(uri: "/v1/spend/series?group_by=label", method: .get,
                                               headers: [.authorization: "Bearer \(t.admin)", .accept: "text/csv"])
            let text = String(buffer: csv.body)
            XCTAssertTrue(text.hasPrefix("bucket,group,label,settled_usd,held_usd,unknown_usd,spent_usd\r\n"), text)
            XCTAssertTrue(text.contains(",billing,billing,3.81,0.00,10.00,13.81\r\n"), text)

            for (query, field) in [("granularity=minute", "granularity"), ("group_by=run", "group_by"), ("from=2026-13-01", "from"),
                                   ("granularity=hour&from=2026-01-01&to=2026-03-01", "from"), ("key_id=nope", "key_id")] {
                let r = try await client.call(.get, "/v1/spend/series?\(query)", token: t.admin)
                XCTAssertEqual(r.status, .badRequest, "\(query): \(r.text)")
                XCTAssertEqual(r.errorField, field, query)
            }
            let (_, stranger) = try await client.signup(name: "Other")
            expectStatus(try await client.call(.get, "/v1/spend/series?key_id=\(aId)", token: stranger), .notFound)
        }
    }
}
