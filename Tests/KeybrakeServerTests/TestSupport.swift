import Foundation
import HTTPLayer
import Hummingbird
import HummingbirdTesting
import KeybrakeServer
import Logging
import Metrics
import Prometheus
import NIOConcurrencyHelpers
import PostgresNIO
import Storage
import Vault
import XCTest

struct MissingTestDatabase: Error, CustomStringConvertible {
    var description: String { "KEYBRAKE_TEST_DATABASE_URL is not set; run `make test`, which starts a throwaway Postgres" }
}

/// The throwaway database `make test` creates. Tests fail (not skip) without it: they need real Postgres.
enum TestDatabase {
    static var url: DatabaseURL {
        get throws {
            guard let text = ProcessInfo.processInfo.environment["KEYBRAKE_TEST_DATABASE_URL"] else {
                throw MissingTestDatabase()
            }
            return try DatabaseURL(text)
        }
    }

    static let migrationsDirectory: String = {
        // Tests/KeybrakeServerTests/TestSupport.swift → package root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Migrations").path
    }()

    private static let migrated = NIOLockedValueBox(false)

    /// Applies migrations once per test process (the migrator itself is idempotent and locked).
    static func migrate() async throws {
        if migrated.withLockedValue({ $0 }) { return }
        let url = try url
        let migrator = try Migrator(directory: migrationsDirectory)
        _ = try await withPostgresClient(url, logger: Logger(label: "test.migrate")) {
            try await migrator.migrate(client: $0, logger: Logger(label: "test.migrate"))
        }
        migrated.withLockedValue { $0 = true }
    }

    /// Runs `body` with a client on the test database, for assertions on stored rows.
    static func withClient<T: Sendable>(_ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        try await withPostgresClient(try url, logger: Logger(label: "test.db"), body)
    }
}

/// Collects every log line the app writes, so tests can assert secrets never reach the log.
final class LogCapture: Sendable {
    let lines = NIOLockedValueBox<[String]>([])

    var logger: Logger {
        var logger = Logger(label: "keybrake.test") { _ in CaptureHandler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    var text: String { lines.withLockedValue { $0.joined(separator: "\n") } }

    struct CaptureHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?,
                 source: String, file: String, function: String, line: UInt) {
            let all = self.metadata.merging(explicit ?? [:]) { $1 }
            capture.lines.withLockedValue { $0.append("\(level) \(message) \(all)") }
        }
    }
}

struct TestApp {
    static let masterKeys = MasterKeyRing.generateConfigLine(id: "test1")
    /// `KEYBRAKE_METRICS_TOKEN` of every test app: /metrics is served on the API's port only behind it.
    static let metricsToken = "metrics-secret-for-tests-0123456789"

    /// swift-metrics can be bootstrapped once per process: every test app exports this one registry.
    static let metrics: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    static func configuration(_ tweak: (inout AppConfiguration) -> Void = { _ in }) throws -> AppConfiguration {
        var config = AppConfiguration(databaseURL: try TestDatabase.url, masterKeys: try MasterKeyRing(parsing: masterKeys))
        config.signupsPerMinutePerClient = 10_000
        config.operatorToken = "operator-secret-for-tests"
        config.databaseMaxConnections = 8
        config.metrics.token = metricsToken
        tweak(&config)
        return config
    }

    /// Builds the real application against the test database and runs `body` with an in-process client (`.router`),
    /// or over a real socket on loopback (`.live`: the peer address is 127.0.0.1, so `X-Forwarded-For` from a
    /// trusted 127.0.0.1 names the client, as behind a load balancer).
    static func run<T>(
        logs: LogCapture = LogCapture(), _ tweak: (inout AppConfiguration) -> Void = { _ in }, over setup: TestingSetup = .router,
        _ body: @escaping @Sendable (any TestClientProtocol) async throws -> T
    ) async throws -> T {
        try await TestDatabase.migrate()
        let app = try buildApplication(try configuration(tweak), logger: logs.logger, metricsRegistry: metrics)
        return try await app.test(setup, body)
    }
}

// MARK: - HTTP helpers

struct HTTPResult {
    let status: HTTPResponse.Status
    let headers: HTTPFields
    let body: Data

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorField: String? { (json["error"] as? [String: Any])?["field"] as? String }
    var text: String { String(decoding: body, as: UTF8.self) }
}

extension TestClientProtocol {
    @discardableResult
    func call(_ method: HTTPRequest.Method, _ uri: String, token: String? = nil, json: Any? = nil, rawBody: String? = nil) async throws -> HTTPResult {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        var body: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json))
        } else if let rawBody {
            headers[.contentType] = "application/json"
            body = ByteBuffer(string: rawBody)
        }
        let response = try await execute(uri: uri, method: method, headers: headers, body: body)
        return HTTPResult(status: response.status, headers: response.headers, body: Data(buffer: response.body))
    }

    /// Signs up a fresh tenant; returns (tenant id, admin token).
    func signup(name: String = "Acme") async throws -> (tenantId: String, token: String) {
        let r = try await call(.post, "/v1/tenants", json: ["name": name, "email": "ops+\(UUID().uuidString.prefix(8))@acme.test"])
        XCTAssertEqual(r.status, .created, r.text)
        let tenant = r.json["tenant"] as? [String: Any]
        return (tenant?["id"] as? String ?? "", r.json["admin_token"] as? String ?? "")
    }

    /// Issues a Stripe key with a charges-only policy; returns (key id, token).
    func createKey(admin: String, _ extra: [String: Any] = [:]) async throws -> (id: String, token: String) {
        var body: [String: Any] = ["vendor": "stripe", "label": "billing-agent", "allowed_endpoints": ["POST /v1/charges"], "daily_usd_cap": 100]
        body.merge(extra) { $1 }
        let r = try await call(.post, "/v1/keys", token: admin, json: body)
        XCTAssertEqual(r.status, .created, r.text)
        return ((r.json["key"] as? [String: Any])?["id"] as? String ?? "", r.json["token"] as? String ?? "")
    }
}

/// XCTAssertEqual on a response's status; takes the result by value so `try await` can stay in the call.
func expectStatus(_ result: HTTPResult, _ status: HTTPResponse.Status, _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(result.status, status, "\(message) \(result.text)", file: file, line: line)
}
