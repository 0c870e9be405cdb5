import Foundation
import HTTPLayer
import HTTPTypes
import HummingbirdTesting
import KeybrakeServer
import NIOConcurrencyHelpers
import PostgresNIO
import TokenAuth
import XCTest

/// DESIGN §4 "Knowing a key id is not power over the key": failed verifications are counted per (id, client) and per
/// client, unverified attempts are summarised (never one audit row each), and hashing is shared fairly between tenants.
final class UnverifiedAttemptTests: XCTestCase {
    static let stranger = "198.51.100.7"
    static let holder = "203.0.113.5"

    /// Over real sockets (the peer is 127.0.0.1, a trusted proxy), so `X-Forwarded-For` names each client as a load
    /// balancer would. The verified-token cache is off: every holder request hashes, as on a cache miss or on
    /// another replica — where a per-id failure count used to lock the holder out.
    static func overLoopback(_ config: inout AppConfiguration) {
        config.port = 0
        config.trustedProxies = TrustedProxies(parsing: "127.0.0.1, ::1")!
        config.tokens.cacheTTL = .zero
    }

    /// The token with its secret changed: same public id, wrong secret.
    static func wrongSecret(_ token: String, _ i: Int) -> String {
        var chars = Array(token)
        let position = chars.count - 1 - (i % 20)
        chars[position] = chars[position] == "a" ? "b" : "a"
        return String(chars)
    }

    /// The fake vendor's customer the requests read (an upstream 200 when the key is accepted).
    static func start() async throws -> ProxyHarness {
        let h = try await ProxyHarness.start()
        h.fake.objects.withLockedValue { $0["cus_1"] = ["id": "cus_1", "object": "customer"] }
        return h
    }

    static func unverifiedRows(_ keyId: String) async throws -> [(errorCode: String?, attempts: Int?)] {
        try await TestDatabase.withClient { db in
            var rows: [(String?, Int?)] = []
            for try await r in try await db.query(
                "SELECT error_code, attempts FROM audit_events WHERE key_id = \(keyId) AND decision = 'denied' ORDER BY created_at"
            ).decode((String?, Int?).self) { rows.append(r) }
            return rows.map { (errorCode: $0.0, attempts: $0.1) }
        }
    }

    func testAStrangerWith1000WrongSecretsFromOneAddressDoesNotLockOutTheHolderOnAnother() async throws {
        let h = try await Self.start()
        defer { h.fake.stop() }
        let keyId = try await h.run(Self.overLoopback, over: .ahc(.http)) { client -> String in
            let tenant = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(tenant, ["allowed_endpoints": ["GET /v1/customers/*"]])
            let strangerDone = ManagedAtomicFlag()
            // The stranger: 1,000 wrong secrets for the holder's key id, 8 at a time, from one address.
            async let strangerStatuses: [HTTPResponse.Status] = withThrowingTaskGroup(of: [HTTPResponse.Status].self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        var statuses: [HTTPResponse.Status] = []
                        for i in stride(from: worker, to: 1000, by: 8) {
                            let r = try await client.proxy(.get, "/stripe/v1/customers/cus_1", key: Self.wrongSecret(token, i),
                                                           headers: ["X-Forwarded-For": Self.stranger])
                            statuses.append(r.status)
                        }
                        return statuses
                    }
                }
                var all: [HTTPResponse.Status] = []
                for try await part in group { all += part }
                strangerDone.set()
                return all
            }
            // The holder, meanwhile, from another address: every request is verified with argon2 (no cache).
            var holderStatuses: [HTTPResponse.Status] = []
            repeat {
                let r = try await client.proxy(.get, "/stripe/v1/customers/cus_1", key: token, headers: ["X-Forwarded-For": Self.holder])
                XCTAssertEqual(r.status, .ok, r.text)
                holderStatuses.append(r.status)
            } while !strangerDone.isSet || holderStatuses.count < 5
            let stranger = try await strangerStatuses

            XCTAssertEqual(stranger.count, 1000)
            XCTAssertEqual(stranger.filter { $0 == .unauthorized }.count, TokenVerifierDefaults.maxFailures, "hashed, then refused")
            XCTAssertEqual(stranger.filter { $0 == .tooManyRequests }.count, 1000 - TokenVerifierDefaults.maxFailures, "cut off before hashing")
            XCTAssertTrue(holderStatuses.allSatisfy { $0 == .ok }, "the holder was locked out: \(holderStatuses)")
            print("lockout: the holder made \(holderStatuses.count) verified requests, all 200, during the stranger's 1,000")

            // The stranger's address is cut off for that id even with the right secret; the holder's is not.
            let strangerWithRightSecret = try await client.proxy(.get, "/stripe/v1/customers/cus_1", key: token,
                                                                 headers: ["X-Forwarded-For": Self.stranger])
            XCTAssertEqual(strangerWithRightSecret.status, .tooManyRequests)
            return keyId
        }
        // Nothing of the stranger's was audited one row each; the shutdown flush wrote one summary (the default
        // interval is a minute, and this test took less).
        let rows = try await Self.unverifiedRows(keyId)
        XCTAssertEqual(rows.count, 1, "\(rows)")
        XCTAssertEqual(rows.first?.errorCode, "unverified_attempts")
        XCTAssertEqual(rows.first?.attempts, 1001, "the 1,000 wrong secrets and the stranger's one right secret while cut off")
    }

    func testUnverifiedAttemptsAreSummarisedAtMostOneRowPerKeyPerInterval() async throws {
        let h = try await Self.start()
        defer { h.fake.stop() }
        try await h.run({ $0.unverifiedSummaryInterval = .milliseconds(400) }) { client in
            let tenant = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(tenant, ["allowed_endpoints": ["GET /v1/customers/*"]])
            let started = ContinuousClock.now
            for i in 0..<30 {
                let r = try await client.proxy(.get, "/stripe/v1/customers/cus_1", key: Self.wrongSecret(token, i))
                XCTAssertTrue([.unauthorized, .tooManyRequests].contains(r.status), r.text)
                // The answer never says whether the secret was wrong or the key unknown beyond that.
                XCTAssertFalse(r.text.contains(token))
            }
            try await Task.sleep(for: .milliseconds(1200))
            let elapsed = ContinuousClock.now - started
            let rows = try await Self.unverifiedRows(keyId)
            let intervals = Int(elapsed / .milliseconds(400)) + 1
            XCTAssertTrue(rows.allSatisfy { $0.errorCode == "unverified_attempts" }, "an attempt was audited on its own: \(rows)")
            XCTAssertEqual(rows.compactMap(\.attempts).reduce(0, +), 30, "every attempt is counted in a summary")
            XCTAssertGreaterThanOrEqual(rows.count, 1)
            XCTAssertLessThanOrEqual(rows.count, intervals, "more than one summary row per interval")
            // The tenant sees the summary through the audit API, with its count.
            let listed = try await client.call(.get, "/v1/audit?key_id=\(keyId)", token: tenant.admin)
            let data = listed.json["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(data.compactMap { $0["attempts"] as? Int }.reduce(0, +), 30, listed.text)
        }
    }

    func testChildKeyMintsCountFailuresPerClientAndTheHolderStillMints() async throws {
        let h = try await Self.start()
        defer { h.fake.stop() }
        let parentId = try await h.run(Self.overLoopback, over: .ahc(.http)) { client -> String in
            let tenant = try await client.tenantWithCredentials()
            let (parentId, token) = try await client.vaultKey(tenant, ["allowed_endpoints": ["POST /v1/charges"], "daily_usd_cap": 10])
            func mint(_ key: String, from address: String) async throws -> HTTPResult {
                let body = try JSONSerialization.data(withJSONObject: ["label": "run", "expires_in_seconds": 60])
                let r = try await client.execute(uri: "/v1/child-keys", method: .post,
                                                 headers: [.authorization: "Bearer \(key)", .contentType: "application/json",
                                                           HTTPField.Name("X-Forwarded-For")!: address],
                                                 body: ByteBuffer(bytes: body))
                return HTTPResult(status: r.status, headers: r.headers, body: Data(buffer: r.body))
            }
            var stranger: [HTTPResponse.Status] = []
            for i in 0..<15 { stranger.append(try await mint(Self.wrongSecret(token, i), from: Self.stranger).status) }
            XCTAssertEqual(stranger.filter { $0 == .unauthorized }.count, TokenVerifierDefaults.maxFailures)
            XCTAssertEqual(stranger.filter { $0 == .tooManyRequests }.count, 15 - TokenVerifierDefaults.maxFailures)
            let holder = try await mint(token, from: Self.holder)
            XCTAssertEqual(holder.status, .created, holder.text)
            return parentId
        }
        let rows = try await Self.unverifiedRows(parentId)
        XCTAssertEqual(rows.map(\.errorCode), ["unverified_attempts"])
        XCTAssertEqual(rows.first?.attempts, 15)
    }

    func testAdminTokenFailuresFromAStrangerDoNotLockOutTheHolder() async throws {
        try await TestApp.run(Self.overLoopback, over: .ahc(.http)) { client in
            let (_, admin) = try await client.signup()
            func show(_ token: String, from address: String) async throws -> HTTPResponse.Status {
                try await client.execute(uri: "/v1/tenant", method: .get,
                                         headers: [.authorization: "Bearer \(token)", HTTPField.Name("X-Forwarded-For")!: address]).status
            }
            for i in 0..<(TokenVerifierDefaults.maxFailures + 5) {
                _ = try await show(Self.wrongSecret(admin, i), from: Self.stranger)
            }
            let cutOff = try await show(Self.wrongSecret(admin, 99), from: Self.stranger)
            XCTAssertEqual(cutOff, .tooManyRequests)
            let holder = try await show(admin, from: Self.holder)
            XCTAssertEqual(holder, .ok)
        }
    }

    /// One tenant minting child keys as fast as it can (each an argon2 hash; one core for hashing here) must not
    /// make another tenant's first request — argon2 inside the database deadline — fail. With one first-come line
    /// for all hashing it waited behind every queued mint and got 503.
    func testATenantHashingHeavilyDoesNotFailAnotherTenantsFirstRequest() async throws {
        let h = try await Self.start()
        defer { h.fake.stop() }
        try await h.run({ config in
            config.tokens.maxConcurrentHashes = 1
            config.proxy.databaseDeadline = .milliseconds(600)
            config.childKeyMintsPerMinutePerTenant = 100_000
        }) { client in
            let busy = try await client.tenantWithCredentials()
            let (_, busyToken) = try await client.vaultKey(busy, ["allowed_endpoints": ["POST /v1/charges"], "daily_usd_cap": 10])
            let quiet = try await client.tenantWithCredentials()
            let (_, quietToken) = try await client.vaultKey(quiet, ["allowed_endpoints": ["GET /v1/customers/*"]])
            // Prime the busy parent's token so its mints queue only their storage hashes.
            let first = try await client.call(.post, "/v1/child-keys", token: busyToken, json: ["label": "run", "expires_in_seconds": 60])
            expectStatus(first, .created)

            async let mints: [HTTPResponse.Status] = withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<80 {
                    group.addTask {
                        try await client.call(.post, "/v1/child-keys", token: busyToken, json: ["label": "run", "expires_in_seconds": 60]).status
                    }
                }
                var all: [HTTPResponse.Status] = []
                for try await s in group { all.append(s) }
                return all
            }
            // ~80 × 27 ms of hashing is queued: far past the 600 ms deadline for anyone at the back of one line.
            try await Task.sleep(for: .milliseconds(300))
            let started = ContinuousClock.now
            let quietFirst = try await client.proxy(.get, "/stripe/v1/customers/cus_1", key: quietToken)
            let waited = ContinuousClock.now - started
            let minted = try await mints
            XCTAssertEqual(quietFirst.status, .ok, "the quiet tenant's first request: \(quietFirst.text)")
            XCTAssertEqual(minted.filter { $0 == .created }.count, 80, "the busy tenant's mints all complete, behind their own work")
            print("fair hashing: the quiet tenant's first request took \(waited) behind 80 queued mints")
        }
    }
}

/// The verifier's defaults the tests count against.
enum TokenVerifierDefaults {
    static let maxFailures = TokenVerifier.Configuration().maxFailures
}

/// Set once, read from any task.
final class ManagedAtomicFlag: Sendable {
    let value = NIOLockedValueBox(false)
    func set() { value.withLockedValue { $0 = true } }
    var isSet: Bool { value.withLockedValue { $0 } }
}
