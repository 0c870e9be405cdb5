import Foundation
import HummingbirdTesting
import KeybrakeCore
import KeybrakeServer
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO
import Storage
import Vault
import Webhooks
import XCTest

/// A clock the test moves.
final class ManualClock: KeybrakeCore.Clock {
    let current: NIOLockedValueBox<Date>
    init(_ start: Date) { current = NIOLockedValueBox(start) }
    func now() -> Date { current.withLockedValue { $0 } }
    func advance(_ seconds: TimeInterval) { current.withLockedValue { $0 = $0.addingTimeInterval(seconds) } }
}

/// A receiver that answers from a script and records what it got.
final class ScriptedReceiver: WebhookTransport {
    struct Post: Sendable { var url: String; var headers: [String: String]; var body: String }
    let posts = NIOLockedValueBox<[Post]>([])
    let script = NIOLockedValueBox<[PostResult]>([])
    /// When the script is empty.
    let otherwise = NIOLockedValueBox(PostResult(status: 500, error: "receiver answered 500"))

    func post(url: String, headers: [(String, String)], body: ByteBuffer, timeout: Duration) async -> PostResult {
        posts.withLockedValue { $0.append(Post(url: url, headers: Dictionary(uniqueKeysWithValues: headers), body: String(buffer: body))) }
        return script.withLockedValue { $0.isEmpty ? otherwise.withLockedValue { $0 } : $0.removeFirst() }
    }
}

/// The delivery service against real Postgres, with an injected clock and receiver.
final class WebhookDeliveryTests: XCTestCase {
    struct Setup { var tenant: String; var admin: String; var endpoint: String; var secret: String; var event: String }

    /// A tenant with one endpoint and one `ping` due. The app's own delivery service is off, so the test's
    /// dispatcher is the only one that delivers.
    static func setUp(format: String = "standard") async throws -> Setup {
        try await TestApp.run({ $0.webhooks.delivers = false }) { client in
            let (tenant, admin) = try await client.signup()
            let created = try await client.call(.post, "/v1/webhook-endpoints", token: admin,
                                                json: ["url": "https://hooks.example.com/kb", "format": format, "description": "ops"])
            expectStatus(created, .created)
            let endpoint = (created.json["endpoint"] as? [String: Any])?["id"] as? String ?? ""
            let ping = try await client.call(.post, "/v1/webhook-endpoints/\(endpoint)/test", token: admin)
            expectStatus(ping, .accepted)
            // The test database is shared: deliveries other tests left pending are not this dispatcher's business.
            try await TestDatabase.withClient { db in
                try await db.query("UPDATE webhook_deliveries SET state = 'failed', next_attempt_at = NULL WHERE state = 'pending' AND tenant_id <> \(tenant)")
            }
            return Setup(tenant: tenant, admin: admin, endpoint: endpoint, secret: created.json["secret"] as? String ?? "",
                         event: ping.json["event_id"] as? String ?? "")
        }
    }

    static func withDispatcher<T: Sendable>(clock: ManualClock, receiver: ScriptedReceiver,
                                  _ body: @escaping @Sendable (WebhookDispatcher) async throws -> T) async throws -> T {
        try await TestDatabase.withClient { db in
            let sealer = CredentialSealer(ring: try MasterKeyRing(parsing: TestApp.masterKeys))
            let dispatcher = WebhookDispatcher(client: DatabasePool(fixed: db), repository: WebhookRepository(client: DatabasePool(fixed: db), sealer: sealer), transport: receiver,
                                               settings: WebhookSettings(), clock: clock)
            return try await body(dispatcher)
        }
    }

    static func attempts(_ delivery: String? = nil, event: String) async throws -> [(attempt: Int, status: Int?, next: Date?, at: Date)] {
        try await TestDatabase.withClient { db in
            var out: [(Int, Int?, Date?, Date)] = []
            for try await r in try await db.query("""
                SELECT a.attempt, a.status, a.next_attempt_at, a.created_at FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
                WHERE d.event_id = \(event) ORDER BY a.attempt
                """).decode((Int, Int?, Date?, Date).self) { out.append(r) }
            return out.map { (attempt: $0.0, status: $0.1, next: $0.2, at: $0.3) }
        }
    }

    static func deliveryState(event: String) async throws -> String {
        try await TestDatabase.withClient { db in
            for try await s in try await db.query("SELECT state FROM webhook_deliveries WHERE event_id = \(event)").decode(String.self) { return s }
            return "none"
        }
    }

    /// A receiver that never answers 2xx gets the event at 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h later,
    /// never before its time, then the delivery is failed; each attempt carries the same webhook-id and a valid
    /// signature over a fresh timestamp.
    func testRetriesFollowTheScheduleThenTheDeliveryFails() async throws {
        let s = try await Self.setUp()
        let start = Date().addingTimeInterval(1)
        let clock = ManualClock(start), receiver = ScriptedReceiver()
        try await Self.withDispatcher(clock: clock, receiver: receiver) { d in
            let logger = Logger(label: "test")
            do { let n = try await d.runOnce(logger: logger); XCTAssertEqual(n, 1, "the ping is due at once") }
            for delay in RetrySchedule.delays {
                clock.advance(delay - 1)
                do { let n = try await d.runOnce(logger: logger); XCTAssertEqual(n, 0, "not before its time (\(delay) s)") }
                clock.advance(1)
                do { let n = try await d.runOnce(logger: logger); XCTAssertEqual(n, 1, "due after \(delay) s") }
            }
            clock.advance(86_400)
            do { let n = try await d.runOnce(logger: logger); XCTAssertEqual(n, 0, "given up after 8 attempts") }
        }
        let attempts = try await Self.attempts(event: s.event)
        XCTAssertEqual(attempts.map(\.attempt), Array(1...8))
        XCTAssertEqual(attempts.map(\.status), Array(repeating: 500, count: 8))
        let gaps = zip(attempts.dropLast(), attempts.dropFirst()).map { $1.at.timeIntervalSince($0.at).rounded() }
        XCTAssertEqual(gaps, RetrySchedule.delays)
        XCTAssertEqual(attempts.compactMap(\.next).map { $0.timeIntervalSince(start).rounded() },
                       [5, 305, 2105, 9305, 27305, 63305, 99305])
        XCTAssertNil(attempts.last?.next)
        let state = try await Self.deliveryState(event: s.event)
        XCTAssertEqual(state, "failed")
        let posts = receiver.posts.withLockedValue { $0 }
        XCTAssertEqual(posts.count, 8)
        for post in posts {
            XCTAssertEqual(post.headers["webhook-id"], s.event)
            let ts = Int64(post.headers["webhook-timestamp"] ?? "") ?? 0
            XCTAssertEqual(post.headers["webhook-signature"],
                           WebhookSigner.signature(secret: s.secret, id: s.event, timestamp: ts, body: Array(post.body.utf8)))
            let payload = try JSONSerialization.jsonObject(with: Data(post.body.utf8)) as? [String: Any]
            XCTAssertEqual(payload?["id"] as? String, s.event)
            XCTAssertEqual(payload?["type"] as? String, "ping")
            XCTAssertEqual((payload?["data"] as? [String: Any])?["tenant_id"] as? String, s.tenant)
        }
        XCTAssertEqual(Set(posts.map { $0.headers["webhook-timestamp"] ?? "" }).count, 8, "a fresh timestamp per attempt")
    }

    /// Two failures, then a 2xx: delivered on the third attempt, and the endpoint is no longer failing.
    func testADeliveryThatSucceedsOnItsThirdAttemptIsDeliveredOnce() async throws {
        let s = try await Self.setUp()
        let clock = ManualClock(Date().addingTimeInterval(1)), receiver = ScriptedReceiver()
        receiver.script.withLockedValue {
            $0 = [PostResult(status: 503, error: "receiver answered 503"), PostResult(status: nil, error: "timed out"), PostResult(status: 204, error: nil)]
        }
        try await Self.withDispatcher(clock: clock, receiver: receiver) { d in
            let logger = Logger(label: "test")
            do { let n = try await d.runOnce(logger: logger); XCTAssertEqual(n, 1) }
            clock.advance(5)
            do { let n = try await d.runOnce(logger: logger); XCTAssertEqual(n, 1) }
            clock.advance(300)
            do { let n = try await d.runOnce(logger: logger); XCTAssertEqual(n, 1) }
            clock.advance(100_000)
            do { let n = try await d.runOnce(logger: logger); XCTAssertEqual(n, 0, "delivered: never again") }
        }
        let attempts = try await Self.attempts(event: s.event)
        XCTAssertEqual(attempts.map(\.status), [503, nil, 204])
        let state = try await Self.deliveryState(event: s.event)
        XCTAssertEqual(state, "delivered")
        try await TestApp.run { client in
            let r = try await client.call(.get, "/v1/webhook-endpoints/\(s.endpoint)", token: s.admin)
            let endpoint = r.json["endpoint"] as? [String: Any]
            XCTAssertTrue(endpoint?["failing_since"] is NSNull, r.text)
            XCTAssertEqual(endpoint?["enabled"] as? Bool, true)
            let deliveries = try await client.call(.get, "/v1/webhook-endpoints/\(s.endpoint)/deliveries", token: s.admin)
            let first = (deliveries.json["data"] as? [[String: Any]])?.first
            XCTAssertEqual(first?["event_id"] as? String, s.event)
            XCTAssertEqual(first?["event_type"] as? String, "ping")
            XCTAssertEqual(first?["state"] as? String, "delivered")
            XCTAssertEqual((first?["attempts"] as? [[String: Any]])?.map { $0["status"] as? Int }, [503, nil, 204], deliveries.text)
        }
    }

    /// An endpoint whose deliveries have all failed for 5 days is disabled, and its GET says why; deliveries to a
    /// disabled endpoint wait (they are not taken) until it is enabled again.
    func testAnEndpointFailingForFiveDaysIsDisabledAndSaysSo() async throws {
        let s = try await Self.setUp()
        let clock = ManualClock(Date().addingTimeInterval(1)), receiver = ScriptedReceiver()
        try await Self.withDispatcher(clock: clock, receiver: receiver) { d in
            let logger = Logger(label: "test")
            do { let n = try await d.runOnce(logger: logger); XCTAssertEqual(n, 1) }
            for delay in RetrySchedule.delays {
                clock.advance(delay)
                _ = try await d.runOnce(logger: logger)
            }
        }
        // A second event, five days after the first failure.
        let second = try await TestApp.run({ $0.webhooks.delivers = false }) { client in
            let r = try await client.call(.post, "/v1/webhook-endpoints/\(s.endpoint)/test", token: s.admin)
            return r.json["event_id"] as? String ?? ""
        }
        clock.advance(5 * 86_400)
        try await Self.withDispatcher(clock: clock, receiver: receiver) { d in
            do { let n = try await d.runOnce(logger: Logger(label: "test")); XCTAssertEqual(n, 1) }
            clock.advance(5)
            do { let n = try await d.runOnce(logger: Logger(label: "test")); XCTAssertEqual(n, 0, "a disabled endpoint's deliveries wait") }
        }
        try await TestApp.run({ $0.webhooks.delivers = false }) { client in
            let r = try await client.call(.get, "/v1/webhook-endpoints/\(s.endpoint)", token: s.admin)
            let endpoint = r.json["endpoint"] as? [String: Any]
            XCTAssertEqual(endpoint?["enabled"] as? Bool, false, r.text)
            XCTAssertTrue((endpoint?["disabled_reason"] as? String)?.contains("5 days") ?? false, r.text)
            let enabled = try await client.call(.patch, "/v1/webhook-endpoints/\(s.endpoint)", token: s.admin, json: ["enabled": true])
            XCTAssertTrue((enabled.json["endpoint"] as? [String: Any])?["disabled_reason"] is NSNull, enabled.text)
        }
        let state = try await Self.deliveryState(event: second)
        XCTAssertEqual(state, "pending")
    }

    /// After a rotation both secrets sign for 24 h; the Slack-compatible format carries a readable `text`.
    func testRotationSignsWithBothSecretsAndSlackFormatIsReadable() async throws {
        let s = try await Self.setUp(format: "slack")
        let rotated = try await TestApp.run({ $0.webhooks.delivers = false }) { client in
            let r = try await client.call(.post, "/v1/webhook-endpoints/\(s.endpoint)/rotate-secret", token: s.admin)
            expectStatus(r, .ok)
            XCTAssertNotNil((r.json["endpoint"] as? [String: Any])?["previous_secret_expires_at"] as? String, r.text)
            return r.json["secret"] as? String ?? ""
        }
        XCTAssertNotEqual(rotated, s.secret)
        let clock = ManualClock(Date().addingTimeInterval(1)), receiver = ScriptedReceiver()
        receiver.otherwise.withLockedValue { $0 = PostResult(status: 200, error: nil) }
        try await Self.withDispatcher(clock: clock, receiver: receiver) { d in
            do { let n = try await d.runOnce(logger: Logger(label: "test")); XCTAssertEqual(n, 1) }
        }
        let post = try XCTUnwrap(receiver.posts.withLockedValue { $0.first })
        let ts = Int64(post.headers["webhook-timestamp"] ?? "") ?? 0
        let signatures = (post.headers["webhook-signature"] ?? "").split(separator: " ").map(String.init)
        XCTAssertEqual(signatures, [rotated, s.secret].compactMap {
            WebhookSigner.signature(secret: $0, id: s.event, timestamp: ts, body: Array(post.body.utf8))
        })
        let text = (try JSONSerialization.jsonObject(with: Data(post.body.utf8)) as? [String: Any])?["text"] as? String
        XCTAssertEqual(text, "Keybrake: ping")
    }

    /// `keybrake rotate-master-key` re-seals endpoint secrets too: after it, a ring without the old key still signs
    /// with the same secret.
    func testRotatingTheMasterKeyReSealsEndpointSecrets() async throws {
        let s = try await Self.setUp()
        let newLine = MasterKeyRing.generateConfigLine(id: "rot\(Int.random(in: 1000...9999))")
        let both = try MasterKeyRing(parsing: newLine + "," + TestApp.masterKeys)
        let moved = try await TestDatabase.withClient { db in
            try await WebhookRepository(client: DatabasePool(fixed: db), sealer: CredentialSealer(ring: both)).resealAll(logger: Logger(label: "test"))
        }
        XCTAssertGreaterThanOrEqual(moved, 1)
        let onlyNew = try MasterKeyRing(parsing: newLine)
        let secrets = try await TestDatabase.withClient { db in
            try await WebhookRepository(client: DatabasePool(fixed: db), sealer: CredentialSealer(ring: onlyNew))
                .secrets(endpointId: s.endpoint, tenantId: s.tenant, now: Date(), logger: Logger(label: "test"))
        }
        XCTAssertEqual(secrets, [s.secret])
        // Back under the test key, for the other tests sharing this database.
        let back = try MasterKeyRing(parsing: TestApp.masterKeys + "," + newLine)
        _ = try await TestDatabase.withClient { db in
            try await WebhookRepository(client: DatabasePool(fixed: db), sealer: CredentialSealer(ring: back)).resealAll(logger: Logger(label: "test"))
        }
    }
}
