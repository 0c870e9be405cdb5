import Foundation
import HTTPTypes
import HummingbirdTesting
import Storage
import XCTest

/// `KEYBRAKE_READ_DATABASE_URL` (README "High availability"): audit, spend and usage reads come from the standby and
/// say how stale they may be; key lists never do; a standby that is down is a read from the primary.
final class StandbyReadsTests: XCTestCase {
    func testAuditAndSpendReadFromTheStandbyAndSayTheirLag() async throws {
        // The test database plays the standby: a primary answers lag 0, as a standby that has replayed everything.
        try await TestApp.run({ $0.readDatabaseURL = try? TestDatabase.url }) { client in
            let (tenantId, admin) = try await client.signup()
            try await AuditAPITests.seed(tenant: tenantId, keyId: "key_seed", count: 3)
            for path in ["/v1/audit?limit=10", "/v1/spend", "/v1/usage"] {
                let r = try await client.call(.get, path, token: admin)
                XCTAssertEqual(r.status, .ok, "\(path): \(r.text)")
                XCTAssertEqual(r.headers[HTTPField.Name("Keybrake-Read-From")!], "standby", path)
                XCTAssertEqual(r.headers[HTTPField.Name("Keybrake-Read-Lag")!], "0.000", path)
            }
            let audit = try await client.call(.get, "/v1/audit?limit=10", token: admin)
            XCTAssertEqual((audit.json["data"] as? [Any])?.count, 3)
            let keys = try await client.call(.get, "/v1/keys", token: admin)
            XCTAssertEqual(keys.status, .ok)
            XCTAssertEqual(keys.headers[HTTPField.Name("Keybrake-Read-From")!], "primary", "key lists never read the standby")
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
