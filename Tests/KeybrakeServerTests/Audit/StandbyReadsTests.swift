import Foundation
import HTTPTypes
import HummingbirdTesting
import Storage
import XCTest

/// `KEYBRAKE_READ_DATABASE_URL` (docs/operations.md "High availability"): answers say where they were read; a standby that is
/// down is a read from the primary. Reads from a real standby, with their lag, and key lists staying on the primary:
/// Tests/e2e/test_15_failover.py.
final class StandbyReadsTests: XCTestCase {
    /// The read URL reaches a primary here (as HAProxy's read port can for a moment after a promotion): the answer
    /// says so instead of calling it a standby's. A standby's own lag is measured by the failover test.
    func testAReadURLThatReachesAPrimaryIsReportedAsThePrimary() async throws {
        try await TestApp.run({ $0.readDatabaseURL = try? TestDatabase.url }) { client in
            let (tenantId, admin) = try await client.signup()
            try await AuditAPITests.seed(tenant: tenantId, keyId: "key_seed", count: 3)
            for path in ["/v1/audit?limit=10", "/v1/spend", "/v1/usage", "/v1/keys"] {
                let r = try await client.call(.get, path, token: admin)
                XCTAssertEqual(r.status, .ok, "\(path): \(r.text)")
                XCTAssertEqual(r.headers[HTTPField.Name("Keybrake-Read-From")!], "primary", path)
                XCTAssertEqual(r.headers[HTTPField.Name("Keybrake-Read-Lag")!], "0", path)
            }
            let audit = try await client.call(.get, "/v1/audit?limit=10", token: admin)
            XCTAssertEqual((audit.json["data"] as? [Any])?.count, 3)
        }
    }

    func testAStandbyThatIsDownIsAReadFromThePrimary() async throws {
        let nobody = try PrivateCluster.freePort()
        try await TestApp.run({
            $0.readDatabaseURL = try? DatabaseURL("postgres://postgres@127.0.0.1:\(nobody)/keybrake_test")
            $0.adminReads.statementTimeout = .milliseconds(500)
        }) { client in
            let (tenantId, admin) = try await client.signup()
            try await AuditAPITests.seed(tenant: tenantId, keyId: "key_seed", count: 2)
            let started = ContinuousClock.now
            let r = try await client.call(.get, "/v1/audit?limit=10", token: admin)
            XCTAssertEqual(r.status, .ok, r.text)
            XCTAssertEqual(r.headers[HTTPField.Name("Keybrake-Read-From")!], "primary")
            XCTAssertEqual(r.headers[HTTPField.Name("Keybrake-Read-Lag")!], "0")
            XCTAssertEqual((r.json["data"] as? [Any])?.count, 2)
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(3), "bounded by the read's deadline")
        }
    }
}
