import Foundation
import HTTPTypes
import HummingbirdTesting
import KeybrakeServer
import NIOCore
import XCTest

/// `GET /metrics` shows every tenant's traffic (DESIGN §9): behind `KEYBRAKE_METRICS_TOKEN` on the API's port, or on
/// a listener of its own (`KEYBRAKE_METRICS_ADDRESS`); never served unauthenticated beside the API.
final class MetricsEndpointTests: XCTestCase {
    func testMetricsNeedTheTokenOnTheAPIPort() async throws {
        try await TestApp.run { client in
            let none = try await client.call(.get, "/metrics")
            expectStatus(none, .unauthorized)
            XCTAssertEqual(none.errorCode, "metrics_token_invalid")
            XCTAssertEqual(none.headers[HTTPField.Name("Keybrake-Error-Code")!], "metrics_token_invalid")
            XCTAssertFalse(none.text.contains("keybrake_"), "no figures in the refusal")
            let wrong = try await client.call(.get, "/metrics", token: TestApp.metricsToken + "x")
            expectStatus(wrong, .unauthorized)
            let prefix = try await client.call(.get, "/metrics", token: String(TestApp.metricsToken.dropLast()))
            expectStatus(prefix, .unauthorized)
            let adminToken = try await client.signup().token
            expectStatus(try await client.call(.get, "/metrics", token: adminToken), .unauthorized, "an admin token is not the metrics token")
            let ok = try await client.call(.get, "/metrics", token: TestApp.metricsToken)
            expectStatus(ok, .ok)
            XCTAssertEqual(ok.headers[.contentType], "text/plain; version=0.0.4")
        }
    }

    func testWithoutATokenTheAPIPortAnswers404() async throws {
        try await TestApp.run({ $0.metrics.token = nil }) { client in
            let r = try await client.call(.get, "/metrics")
            expectStatus(r, .notFound)
            XCTAssertFalse(r.text.contains("keybrake_"))
        }
    }

    func testTheMetricsAddressServesMetricsOnItsOwnListenerOnly() async throws {
        let port = try PrivateCluster.freePort()
        try await TestApp.run({ config in
            config.metrics.token = nil
            config.metrics.address = ("127.0.0.1", port)
        }) { client in
            expectStatus(try await client.call(.get, "/metrics"), .notFound, "not on the API's port")
            let (status, body) = try await Self.get("http://127.0.0.1:\(port)/metrics")
            XCTAssertEqual(status, 200)
            XCTAssertTrue(body.contains("# TYPE"), String(body.prefix(300)))
            let (apiStatus, _) = try await Self.get("http://127.0.0.1:\(port)/v1/tenant")
            XCTAssertEqual(apiStatus, 404, "the metrics listener serves nothing of the API")
        }
    }

    func testTheMetricsAddressAsksForTheTokenWhenOneIsSet() async throws {
        let port = try PrivateCluster.freePort()
        try await TestApp.run({ config in config.metrics.address = ("127.0.0.1", port) }) { _ in
            let (without, _) = try await Self.get("http://127.0.0.1:\(port)/metrics")
            XCTAssertEqual(without, 401)
            let (with, _) = try await Self.get("http://127.0.0.1:\(port)/metrics", token: TestApp.metricsToken)
            XCTAssertEqual(with, 200)
        }
    }

    func testMetricsAddressParsing() {
        XCTAssertEqual(MetricsSettings.parseAddress("127.0.0.1:9090")?.host, "127.0.0.1")
        XCTAssertEqual(MetricsSettings.parseAddress("127.0.0.1:9090")?.port, 9090)
        XCTAssertEqual(MetricsSettings.parseAddress("[::1]:9091")?.host, "::1")
        XCTAssertEqual(MetricsSettings.parseAddress("[::1]:9091")?.port, 9091)
        XCTAssertNil(MetricsSettings.parseAddress("9090"))
        XCTAssertNil(MetricsSettings.parseAddress("host:port"))
        XCTAssertNil(MetricsSettings.parseAddress(":9090"))
        XCTAssertNil(MetricsSettings.parseAddress("127.0.0.1:70000"))
    }

    func testConfigurationReadsTheMetricsVariablesAndRefusesBadOnes() throws {
        var env = ["DATABASE_URL": "postgres://u@127.0.0.1:5432/d", "KEYBRAKE_MASTER_KEYS": TestApp.masterKeys]
        env["KEYBRAKE_METRICS_TOKEN"] = "a-long-enough-metrics-token"
        env["KEYBRAKE_METRICS_ADDRESS"] = "10.0.0.5:9464"
        let config = try AppConfiguration.fromEnvironment(env)
        XCTAssertEqual(config.metrics.token, "a-long-enough-metrics-token")
        XCTAssertEqual(config.metrics.address?.port, 9464)
        env["KEYBRAKE_METRICS_TOKEN"] = "short"
        XCTAssertThrowsError(try AppConfiguration.fromEnvironment(env))
        env["KEYBRAKE_METRICS_TOKEN"] = nil
        env["KEYBRAKE_METRICS_ADDRESS"] = "9464"
        XCTAssertThrowsError(try AppConfiguration.fromEnvironment(env))
    }

    /// A GET over a real socket (the listener under test is a real one); retried while it starts.
    static func get(_ url: String, token: String? = nil) async throws -> (Int, String) {
        let parsed = URL(string: url)!
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        var lastError: (any Error)?
        for _ in 0..<50 {
            let client = TestClient(host: parsed.host!, port: parsed.port!)
            client.connect()
            do {
                let response = try await client.get(parsed.path, headers: headers)
                try await client.shutdown()
                return (Int(response.status.code), String(buffer: response.body ?? ByteBuffer()))
            } catch {
                try? await client.shutdown()
                lastError = error
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        throw lastError!
    }
}
