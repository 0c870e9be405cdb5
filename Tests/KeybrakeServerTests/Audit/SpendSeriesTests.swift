import Foundation
import HummingbirdTesting
import KeybrakeServer
import PostgresNIO
import XCTest

/// GET /v1/spend/series: spend over time from the ledger, exact to the micro-dollar (DESIGN §14).
final class SpendSeriesTests: XCTestCase {
    /// Reservations as the proxy leaves them: (key, state, amount, settled, day, created_at).
    static func reserve(_ rows: [(key: String, state: String, amount: Int64, settled: Int64?, day: String, at: String)], tenant: String) async throws {
        try await TestDatabase.withClient { db in
            for r in rows {
                let id = "aud_series\(UUID().uuidString.prefix(8))"
                try await db.query("""
                    INSERT INTO reservations (id, tenant_id, key_id, amount_micros, day, month, state, settled_micros, created_at)
                    VALUES (\(id), \(tenant), \(r.key), \(r.amount), \(r.day)::date, date_trunc('month', \(r.day)::date)::date, \(r.state), \(r.settled),
                            \(r.at)::timestamptz)
                    """)
            }
        }
    }

    func testDailyAndHourlySeriesAreExactAndSayWhichIsWhich() async throws {
        try await TestApp.run({ $0.webhooks.delivers = false }) { client in
            let (tenant, admin) = try await client.signup()
            let (a, _) = try await client.createKey(admin: admin, ["label": "billing", "timezone": "America/New_York"])
            let (b, _) = try await client.createKey(admin: admin, ["label": "refunds", "vendor": "stripe"])
            try await Self.reserve([
                (a, "settled", 1_000_000, 999_999, "2026-11-30", "2026-11-30T23:30:00Z"),   // 18:30 in New York
                (a, "settled", 2_500_000, 2_500_000, "2026-11-30", "2026-12-01T03:59:00Z"), // 22:59 in New York, still the 30th there
                (a, "held", 300_000, nil, "2026-12-01", "2026-12-01T15:00:00Z"),
                (a, "unknown", 8_300, nil, "2026-12-01", "2026-12-01T15:10:00Z"),
                (a, "released", 5_000_000, nil, "2026-12-01", "2026-12-01T15:20:00Z"),    // nothing moved: not spend
                (b, "settled", 700_000, 700_000, "2026-12-01", "2026-12-01T16:00:00Z"),
            ], tenant: tenant)

            let daily = try await client.call(.get, "/v1/spend/series?granularity=day&from=2026-11-25&to=2026-12-05&group_by=label", token: admin)
            expectStatus(daily, .ok)
            let rows = try XCTUnwrap(daily.json["data"] as? [[String: Any]])
            let flat = rows.map { "\($0["bucket"]!) \($0["group"]!) \($0["settled_usd"]!) \($0["reserved_usd"]!) \($0["outcome_unknown_usd"]!) \($0["spent_usd"]!)" }
            XCTAssertEqual(flat, ["2026-11-30 billing 3.499999 0 0 3.499999",
                                  "2026-12-01 billing 0 0.3 0.0083 0.3083",
                                  "2026-12-01 refunds 0.7 0 0 0.7"], daily.text)

            // One key's hours, in its own time zone.
            let hourly = try await client.call(.get, "/v1/spend/series?granularity=hour&key_id=\(a)&from=2026-11-30T00:00:00Z&to=2026-12-02T00:00:00Z", token: admin)
            expectStatus(hourly, .ok)
            XCTAssertEqual(hourly.json["timezone"] as? String, "America/New_York")
            let hours = (hourly.json["data"] as? [[String: Any]])?.map { "\($0["bucket"]!) \($0["spent_usd"]!)" }
            XCTAssertEqual(hours, ["2026-11-30T18:00 0.999999", "2026-11-30T22:00 2.5", "2026-12-01T10:00 0.3083"], hourly.text)

            // CSV, exact dollars.
            let csv = try await client.execute(uri: "/v1/spend/series?granularity=day&from=2026-11-25&to=2026-12-05&group_by=vendor", method: .get,
                                               headers: [.authorization: "Bearer \(admin)", .accept: "text/csv"])
            XCTAssertEqual(csv.status, .ok)
            XCTAssertEqual(String(buffer: csv.body), ["bucket,group,settled_usd,reserved_usd,outcome_unknown_usd,spent_usd",
                                                      "2026-11-30,stripe,3.499999,0.00,0.00,3.499999",
                                                      "2026-12-01,stripe,0.70,0.30,0.0083,1.0083", ""].joined(separator: "\r\n"))
        }
    }

    func testBadParametersAndOtherTenantsKeysAreRefused() async throws {
        try await TestApp.run({ $0.webhooks.delivers = false }) { client in
            let (_, admin) = try await client.signup()
            let (_, other) = try await client.signup(name: "Other")
            let (otherKey, _) = try await client.createKey(admin: other)
            for (query, field) in [("granularity=minute", "granularity"), ("group_by=run", "group_by"), ("from=yesterday", "from"),
                                   ("from=2026-12-05&to=2026-12-01", "to"), ("from=2025-01-01&to=2026-12-01", "from"),
                                   ("granularity=hour&from=2026-10-01&to=2026-12-01", "from")] {
                let r = try await client.call(.get, "/v1/spend/series?\(query)", token: admin)
                expectStatus(r, .badRequest, query)
                XCTAssertEqual(r.errorField, field, query)
            }
            expectStatus(try await client.call(.get, "/v1/spend/series?key_id=\(otherKey)", token: admin), .notFound)
            let empty = try await client.call(.get, "/v1/spend/series", token: admin)
            expectStatus(empty, .ok)
            XCTAssertEqual((empty.json["data"] as? [[String: Any]])?.count, 0)
        }
    }
}
