import Foundation
import HTTPLayer
import KeybrakeServer
import Storage
import Vault
import XCTest

/// Issue 26's settings: admission, admin reads' queue, the client-address header, tenant totals.
final class IsolationConfigurationTests: XCTestCase {
    func env(_ extra: [String: String]) -> [String: String] {
        ["DATABASE_URL": "postgres://postgres@127.0.0.1:5432/keybrake",
         "KEYBRAKE_MASTER_KEYS": MasterKeyRing.generateConfigLine(id: "t1")].merging(extra) { $1 }
    }

    func testDefaultsAndSettings() throws {
        let plain = try AppConfiguration.fromEnvironment(env([:]))
        XCTAssertEqual(plain.admission, TenantGate.Settings(seats: 16, seatsPerTenant: 12, queuePerTenant: 512, maxWait: .seconds(2)))
        XCTAssertEqual(plain.adminReads.queuePerTenant, 64)
        XCTAssertEqual(plain.adminReads.maxWait, .seconds(1))
        XCTAssertEqual(plain.trustedProxies.header, .xForwardedFor)
        XCTAssertEqual(plain.maxKeysPerTenant, 10_000)
        XCTAssertEqual(plain.maxSessionsPerTenant, 100)

        let c = try AppConfiguration.fromEnvironment(env([
            "KEYBRAKE_ADMISSION_SEATS": "32", "KEYBRAKE_ADMISSION_SEATS_PER_TENANT": "4", "KEYBRAKE_ADMISSION_QUEUE_PER_TENANT": "0",
            "KEYBRAKE_ADMISSION_WAIT_MS": "250", "KEYBRAKE_ADMIN_READS_QUEUE_PER_TENANT": "0", "KEYBRAKE_ADMIN_READS_WAIT_MS": "300",
            "KEYBRAKE_CLIENT_ADDRESS_HEADER": "Forwarded", "KEYBRAKE_MAX_KEYS_PER_TENANT": "5", "KEYBRAKE_MAX_SESSIONS_PER_TENANT": "3",
        ]))
        XCTAssertEqual(c.admission, TenantGate.Settings(seats: 32, seatsPerTenant: 4, queuePerTenant: 0, maxWait: .milliseconds(250)))
        XCTAssertEqual(c.adminReads.queuePerTenant, 0)
        XCTAssertEqual(c.adminReads.maxWait, .milliseconds(300))
        XCTAssertEqual(c.trustedProxies.header, .forwarded)
        XCTAssertEqual(c.maxKeysPerTenant, 5)
        XCTAssertEqual(c.maxSessionsPerTenant, 3)
        XCTAssertEqual(try AppConfiguration.fromEnvironment(env(["KEYBRAKE_ADMISSION_SEATS": "0"])).admission.seats, 0, "0: no gate")
    }

    func testBadValuesNameTheirSetting() {
        for (name, value) in [("KEYBRAKE_ADMISSION_SEATS", "-1"), ("KEYBRAKE_ADMISSION_WAIT_MS", "0"),
                              ("KEYBRAKE_CLIENT_ADDRESS_HEADER", "x-real-ip"), ("KEYBRAKE_MAX_KEYS_PER_TENANT", "0"),
                              ("KEYBRAKE_ADMIN_READS_QUEUE_PER_TENANT", "lots")] {
            XCTAssertThrowsError(try AppConfiguration.fromEnvironment(env([name: value])), name) { error in
                XCTAssertTrue("\(error)".contains(name), "\(error)")
            }
        }
        XCTAssertThrowsError(try AppConfiguration.fromEnvironment(env(["KEYBRAKE_ADMISSION_SEATS": "4", "KEYBRAKE_ADMISSION_SEATS_PER_TENANT": "8"])))
    }
}
