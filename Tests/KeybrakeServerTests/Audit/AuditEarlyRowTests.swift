import Foundation
import HTTPTypes
import HummingbirdTesting
import KeybrakeServer
import PostgresNIO
import XCTest

/// The audit row of a call that moves no money is written while the call is upstream (issue 16), so a slow vendor
/// hides the round trip; the answer's fields are filled in afterwards.
final class AuditEarlyRowTests: XCTestCase {
    static func row(_ keyId: String) async throws -> (errorCode: String?, state: String?, status: Int?, count: Int) {
        try await TestDatabase.withClient { db in
            var out: (String?, String?, Int?, Int) = (nil, nil, nil, 0)
            for try await (code, state, status) in try await db.query(
                "SELECT error_code, state, upstream_status FROM audit_events WHERE key_id = \(keyId)"
            ).decode((String?, String?, Int?).self) { out = (code, state, status, out.3 + 1) }
            return out
        }
    }

    func testTheRowOfACallThatMovesNoMoneyExistsBeforeTheVendorAnswers() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(400) }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["allowed_endpoints": ["GET /v1/charges/*"]])
            async let answer = client.proxy(.get, "/stripe/v1/charges/ch_missing", key: token)
            // While the vendor thinks, the row is there, marked in flight.
            var during = (errorCode: String?.none, state: String?.none, status: Int?.none, count: 0)
            for _ in 0..<30 {
                try await Task.sleep(for: .milliseconds(10))
                during = try await Self.row(keyId)
                if during.count > 0 { break }
            }
            XCTAssertEqual(during.count, 1, "the row is written before the vendor answers")
            XCTAssertEqual(during.state, "in_flight")
            XCTAssertNil(during.errorCode)
            XCTAssertNil(during.status)
            let r = try await answer
            XCTAssertEqual(r.status.code, 404)
            // Then it is completed with the answer (after the agent has it: poll, it is not awaited).
            var after = during
            for _ in 0..<100 where after.state == "in_flight" {
                try await Task.sleep(for: .milliseconds(20))
                after = try await Self.row(keyId)
            }
            XCTAssertEqual(after.count, 1, "one row per call")
            XCTAssertNil(after.errorCode)
            XCTAssertNil(after.state)
            XCTAssertEqual(after.status, 404)
        }
    }
}
