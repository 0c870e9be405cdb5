#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HTTPLayer
import HummingbirdTesting
import KeybrakeServer
import Logging
import Storage
import XCTest

/// Operable while the database is down (docs/operations.md): the connect probe names the address and the cause,
/// and a replica whose database is not there yet is live, not ready, and fails closed. The process-level cases
/// (signals, exit codes, timings) are in Tests/e2e/test_11_lifecycle.py.
final class LifecycleTests: XCTestCase {
    func probeError(_ url: DatabaseURL) async throws -> DatabaseConnectError {
        do {
            let connection = try await DatabaseProbe.connect(url, logger: Logger(label: "test.probe"))
            try? await connection.close()
            XCTFail("connected to \(url.redacted)")
            throw CancellationError()
        } catch let error as DatabaseConnectError {
            return error
        }
    }

    func testAClosedPortIsRefusedNamingTheAddressAndNotThePassword() async throws {
        let url = try DatabaseURL("postgres://keybrake:s3cret@127.0.0.1:1/keybrake")
        let started = ContinuousClock.now
        let error = try await probeError(url)
        XCTAssertEqual(error.cause, .refused)
        XCTAssertTrue(error.description.hasPrefix("cannot connect to the database at 127.0.0.1:1: connection refused"), error.description)
        XCTAssertFalse(error.description.contains("s3cret"))
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
    }

    func testAMissingDatabaseAUnknownRoleAndTLSThatTheServerLacksAreNamed() async throws {
        var url = try TestDatabase.url
        url.database = "keybrake_no_such_database"
        let missing = try await probeError(url)
        XCTAssertEqual(missing.cause, .databaseMissing, missing.description)
        XCTAssertTrue(missing.description.contains("\"keybrake_no_such_database\" does not exist"), missing.description)

        url = try TestDatabase.url
        url.username = "keybrake_no_such_role"
        let role = try await probeError(url)
        XCTAssertEqual(role.cause, .authenticationFailed, role.description)
        XCTAssertTrue(role.isPermanent)

        url = try TestDatabase.url
        url.requireTLS = true
        let tls = try await probeError(url)
        XCTAssertEqual(tls.cause, .tls, tls.description)
    }

    func testAnAddressThatNeverAnswersTimesOutWithinTheConnectTimeout() async throws {
        // A listening socket that never accepts the Postgres handshake: TCP connects, the start-up never completes.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        XCTAssertEqual(listen(listener, 4), 0)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        var url = try DatabaseURL("postgres://postgres@127.0.0.1:\(UInt16(bigEndian: address.sin_port))/keybrake")
        url.connectTimeout = .milliseconds(500)
        let started = ContinuousClock.now
        let error = try await probeError(url)
        XCTAssertEqual(error.cause, .timedOut, error.description)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
    }

    func testWithTheDatabaseDownTheReplicaIsLiveNotReadyAndFailsClosed() async throws {
        var config = try TestApp.configuration()
        config.databaseURL = try DatabaseURL("postgres://postgres@127.0.0.1:1/keybrake")
        let logs = LogCapture()
        let app = try buildApplication(config, logger: logs.logger, startup: StartupPlan(migrator: nil, requiredVersion: 1))
        try await app.test(.router) { client in
            expectStatus(try await client.call(.get, "/health"), .ok)
            let ready = try await client.call(.get, "/ready")
            expectStatus(ready, .serviceUnavailable)
            XCTAssertEqual(ready.json["reason"] as? String, "database_unreachable", ready.text)
            let proxied = try await client.call(.post, "/stripe/v1/charges", token: "kb_vault_x_y", rawBody: "amount=100&currency=usd")
            expectStatus(proxied, .serviceUnavailable)
            XCTAssertEqual(proxied.headers[.keybrakeErrorCode], "unavailable")
            let admin = try await client.call(.get, "/v1/tenant", token: "kb_admin_x_y")
            expectStatus(admin, .serviceUnavailable)
            XCTAssertEqual(admin.errorCode, "unavailable")
            // Retried every half second, said once.
            try await Task.sleep(for: .milliseconds(1300))
            XCTAssertEqual(logs.lines.withLockedValue { $0.filter { $0.contains("cannot connect to the database at 127.0.0.1:1") }.count }, 1)
        }
    }

    func testAReplicaMigratesOnceTheDatabaseAnswersThenIsReady() async throws {
        try await TestDatabase.migrate()
        let migrator = try Migrator(directory: TestDatabase.migrationsDirectory)
        let config = try TestApp.configuration()
        let app = try buildApplication(config, logger: LogCapture().logger,
                                       startup: StartupPlan(migrator: migrator, requiredVersion: migrator.latestVersion))
        try await app.test(.router) { client in
            let deadline = ContinuousClock.now + .seconds(10)
            var ready = try await client.call(.get, "/ready")
            while ready.status != .ok, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                ready = try await client.call(.get, "/ready")
            }
            expectStatus(ready, .ok)
            _ = try await client.signup()
        }
    }

    func testAReplicaWaitsForASchemaNewerThanTheDatabasesAndSaysWhy() async throws {
        try await TestDatabase.migrate()
        let config = try TestApp.configuration()
        let logs = LogCapture()
        let app = try buildApplication(config, logger: logs.logger, startup: StartupPlan(migrator: nil, requiredVersion: 999_999))
        try await app.test(.router) { client in
            try await Task.sleep(for: .milliseconds(1200))
            let ready = try await client.call(.get, "/ready")
            expectStatus(ready, .serviceUnavailable)
            XCTAssertEqual(ready.json["reason"] as? String, "schema_missing", ready.text)
            XCTAssertTrue((ready.json["message"] as? String ?? "").contains("this build needs 999999"), ready.text)
            XCTAssertEqual(logs.lines.withLockedValue { $0.filter { $0.contains("run `keybrake migrate`") }.count }, 1)
        }
    }
}
