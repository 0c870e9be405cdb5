import Foundation
import KeybrakeCore
import KeybrakeServer
import Proxy
import Vault
import XCTest

/// The upstream connection variables (README "Configuration"): parsed, defaulted, refused with a clear message.
final class UpstreamConfigurationTests: XCTestCase {
    func env(_ extra: [String: String]) -> [String: String] {
        ["DATABASE_URL": "postgres://postgres@127.0.0.1:5432/keybrake",
         "KEYBRAKE_MASTER_KEYS": MasterKeyRing.generateConfigLine(id: "t1")].merging(extra) { $1 }
    }

    func testDefaultsAndPerVendorCeilings() throws {
        let plain = try AppConfiguration.fromEnvironment(env([:])).proxy.upstream
        XCTAssertEqual(plain.maxInFlight(for: .stripe), 1024)
        XCTAssertEqual(plain.streamsPerConnection, 100)
        XCTAssertEqual(plain.busyWait, .seconds(1))
        XCTAssertNil(plain.egressProxy.https)

        let u = try AppConfiguration.fromEnvironment(env([
            "KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT": "300", "KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT_TWILIO": "20",
            "KEYBRAKE_UPSTREAM_H2_STREAMS": "50", "KEYBRAKE_UPSTREAM_BUSY_WAIT_MS": "0", "KEYBRAKE_UPSTREAM_MAX_WAITING": "7",
            "KEYBRAKE_UPSTREAM_IDLE_TIMEOUT_MS": "1500", "KEYBRAKE_UPSTREAM_CONNECT_TIMEOUT_MS": "800",
            "HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "api.resend.com",
        ])).proxy.upstream
        XCTAssertEqual(u.maxInFlight(for: .stripe), 300)
        XCTAssertEqual(u.maxInFlight(for: .twilio), 20)
        XCTAssertEqual(u.streamsPerConnection, 50)
        XCTAssertEqual(u.busyWait, .zero)
        XCTAssertEqual(u.maxWaiting, 7)
        XCTAssertEqual(u.idleTimeout, .milliseconds(1500))
        XCTAssertEqual(u.connectTimeout, .milliseconds(800))
        XCTAssertEqual(u.egressProxy.server(for: URL(string: "https://api.stripe.com")!)?.host, "proxy.corp")
        XCTAssertNil(u.egressProxy.server(for: URL(string: "https://api.resend.com")!))
    }

    func testBadValuesAreRefusedNamingTheVariable() {
        for (name, value) in [("KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT", "0"), ("KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT_STRIPE", "many"),
                              ("KEYBRAKE_UPSTREAM_BUSY_WAIT_MS", "-1"), ("KEYBRAKE_UPSTREAM_H2_STREAMS", "0"),
                              ("KEYBRAKE_UPSTREAM_CA_FILE", "/nonexistent/ca.pem"), ("HTTPS_PROXY", "https://u:secretpw@proxy:443")] {
            XCTAssertThrowsError(try AppConfiguration.fromEnvironment(env([name: value])), name) { error in
                XCTAssertTrue("\(error)".contains(name), "\(error)")
                XCTAssertFalse("\(error)".contains("secretpw"))
            }
        }
    }

    func testACABundleIsReadAtStartUpAndGarbageIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kb-ca-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let garbage = dir.appendingPathComponent("garbage.pem")
        try Data("not a certificate".utf8).write(to: garbage)
        XCTAssertThrowsError(try AppConfiguration.fromEnvironment(env(["KEYBRAKE_UPSTREAM_CA_FILE": garbage.path]))) { error in
            XCTAssertTrue("\(error)".contains("KEYBRAKE_UPSTREAM_CA_FILE"), "\(error)")
        }
        // A real certificate (a throwaway self-signed CA, fixed here so the test needs no openssl).
        let pem = dir.appendingPathComponent("ca.pem")
        try Data(Self.testCA.utf8).write(to: pem)
        let u = try AppConfiguration.fromEnvironment(env(["KEYBRAKE_UPSTREAM_CA_FILE": pem.path])).proxy.upstream
        XCTAssertEqual(u.extraTrustRoots.count, 1)
    }

    static let testCA = """
-----BEGIN CERTIFICATE-----
MIIBjjCCATOgAwIBAgIUXuPwm499EnVBULUfVHAID/7jGjswCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQS2V5YnJha2UgdGVzdCBDQTAgFw0yNjExMjkwNjQ0MjZaGA8y
MTI2MTEwNTA2NDQyNlowGzEZMBcGA1UEAwwQS2V5YnJha2UgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABFHDR2agZFkNi7W6Hssk6sPkGkQuTz/AvCWK
gJWGlNyDvCbYQPDXs7nV64OaH+IXrQ0Ptuq/JNUmMYvVq2eHILCjUzBRMB0GA1Ud
DgQWBBRm4Jy1FYQbmN/v9YuK5aBmKeygpzAfBgNVHSMEGDAWgBRm4Jy1FYQbmN/v
9YuK5aBmKeygpzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDJ
ZTDqBV/mW1eU2CYyvz7F4TA5TVQZXH1txoOft0RbpAIhAOcADaxpvG1tmI0oZOyW
wN3Hu0GjnGznis2mJ3Lt9xX/
-----END CERTIFICATE-----
"""
}
