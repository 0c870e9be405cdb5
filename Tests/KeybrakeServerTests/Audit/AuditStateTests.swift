import Foundation
import HTTPTypes
import HummingbirdTesting
import PostgresNIO
import XCTest

/// Where a request's row is in its life is its `state` (0017), not an error code: `in_flight` while the vendor holds
/// the request, `lease_expired` once its lease ran out (its replica taken for dead), null once the row is completed.
final class AuditStateTests: XCTestCase {
    func testAnInFlightRowThenALeaseExpiredOneReadTheirStateWithNoErrorCode() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(2_500) }
        try await h.run({ $0.proxy.upstreamTimeout = .seconds(8) }) { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            async let charged = client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1500"), ("currency", "usd")])
            for _ in 0..<150 where h.fake.requests(path: "/v1/charges").isEmpty { try await Task.sleep(for: .milliseconds(20)) }

            // While the vendor holds it: state in_flight, no error code; the state filter finds it.
            let listed = try await client.call(.get, "/v1/audit?key_id=\(keyId)", token: t.admin)
            let rows = listed.json["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(rows.count, 1, listed.text)
            let id = rows.first?["id"] as? String ?? ""
            XCTAssertEqual(rows.first?["state"] as? String, "in_flight", listed.text)
            XCTAssertTrue(rows.first?["error_code"] is NSNull, "in flight is no error: \(listed.text)")
            let inFlight = try await client.call(.get, "/v1/audit?state=in_flight&key_id=\(keyId)", token: t.admin)
            XCTAssertEqual((inFlight.json["data"] as? [[String: Any]])?.count, 1, inFlight.text)

            // Its lease runs out while the vendor still holds it (as if its replica had died): the sweep marks the row.
            let expired = try await TestDatabase.withClient { db in
                try await db.query("UPDATE idempotency_records SET expires_at = now() - interval '1 second' WHERE owner_id = \(id)")
                var n: Int32 = 0
                for try await v in try await db.query("SELECT kb_expire_leases(500)").decode(Int32.self) { n = v }
                return n
            }
            XCTAssertEqual(expired, 1, "the request held a reservation under an idempotency lease")
            let shown = try await client.call(.get, "/v1/audit/\(id)", token: t.admin)
            let event = shown.json["event"] as? [String: Any] ?? [:]
            XCTAssertEqual(event["state"] as? String, "lease_expired", shown.text)
            XCTAssertTrue(event["error_code"] is NSNull, shown.text)
            XCTAssertEqual(event["outcome"] as? String, "outcome_unknown", shown.text)
            let byState = try await client.call(.get, "/v1/audit?state=lease_expired", token: t.admin)
            XCTAssertEqual((byState.json["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, [id], byState.text)
            let csv = try await client.execute(uri: "/v1/audit?key_id=\(keyId)", method: .get,
                                               headers: [.authorization: "Bearer \(t.admin)", .accept: "text/csv"])
            let lines = String(buffer: csv.body).split(separator: "\r\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
            let column = lines.first?.firstIndex(of: "state")
            XCTAssertNotNil(column, "the CSV has the state column")
            if let column, lines.count > 1 { XCTAssertEqual(lines[1][column], "lease_expired") }

            // The vendor answers after all: the settle completes the row, which then says how the request ended.
            expectStatus(try await charged, .ok)
            let done = try await client.call(.get, "/v1/audit/\(id)", token: t.admin)
            let final = done.json["event"] as? [String: Any] ?? [:]
            XCTAssertTrue(final["state"] is NSNull, done.text)
            XCTAssertEqual(final["upstream_status"] as? Int, 200, done.text)
        }
    }
}
