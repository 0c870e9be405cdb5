import Alerts
import Crypto
import Foundation
import HTTPTypes
import HummingbirdTesting
import KeybrakeServer
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Vault
import XCTest

/// A receiver in memory: records every attempt and answers from a script (then 200).
final class ScriptedTransport: WebhookTransport {
    struct Attempt: Sendable { var url: String; var headers: [String: String]; var body: [UInt8] }
    let attempts = NIOLockedValueBox<[Attempt]>([])
    let script = NIOLockedValueBox<[TransportResult]>([])

    func post(url: String, headers: [(String, String)], body: [UInt8], timeout: Duration) async -> TransportResult {
        attempts.withLockedValue { $0.append(Attempt(url: url, headers: Dictionary(headers, uniquingKeysWith: { $1 }), body: body)) }
        return script.withLockedValue { $0.isEmpty ? TransportResult(status: 200) : $0.removeFirst() }
    }
}

final class WebhookDeliveryTests: XCTestCase {
    /// The Standard Webhooks spec's own example (and the reference libraries' test vector).
    func testSignatureMatchesTheStandardWebhooksVector() {
        let key = StandardWebhooks.key(of: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")!
        let sig = StandardWebhooks.signature(key: key, id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1614265330,
                                             body: Array(#"{"test": 2432232314}"#.utf8))
        XCTAssertEqual(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        let two = StandardWebhooks.headers(id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1614265330,
                                           body: Array(#"{"test": 2432232314}"#.utf8), keys: [Array(repeating: 7, count: 32), key])
        XCTAssertEqual(two.first { $0.0 == "webhook-signature" }?.1.split(separator: " ").last.map(String.init), sig)
        XCTAssertNil(StandardWebhooks.key(of: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
        let fresh = StandardWebhooks.generateSecret()
        XCTAssertTrue(fresh.hasPrefix("whsec_"))
        XCTAssertEqual(StandardWebhooks.key(of: fresh)?.count, 32)
    }

    func testPublicAddressRules() {
        let policy = WebhookURLPolicy(allowPrivate: false)
        for bad in ["http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/", "https://[::1]/", "https://169.254.169.254/latest",
                    "https://localhost/x", "https://[fd00::1]/", "https://[::ffff:192.168.1.1]/", "https://user:pw@hooks.example.com/", "ftp://x.example/"] {
            XCTAssertThrowsError(try policy.validate(bad), bad)
        }
        XCTAssertNoThrow(try policy.validate("https://hooks.example.com/keybrake"))
        XCTAssertNoThrow(try policy.validate("https://93.184.216.34/x"))
        XCTAssertNoThrow(try WebhookURLPolicy(allowPrivate: true).validate("http://127.0.0.1:9000/hook"))
        XCTAssertFalse(IPAddress.isPublic(IPAddress.parse("100.64.0.1")!))
        XCTAssertTrue(IPAddress.isPublic(IPAddress.parse("2606:4700::1111")!))
    }

    func testResolvedPrivateAddressIsRefusedAtDelivery() async {
        let refusal = await WebhookURLPolicy(allowPrivate: false).refusal(host: "localhost")
        XCTAssertNotNil(refusal)
        let allowed = await WebhookURLPolicy(allowPrivate: true).refusal(host: "localhost")
        XCTAssertNil(allowed)
    }

    static func allowPrivateNoService(_ c: inout AppConfiguration) {
        c.webhooks.allowPrivate = true
        c.webhooks.deliver = false
    }

    static func deliverer(_ db: PostgresClient, _ transport: ScriptedTransport) throws -> WebhookDeliverer {
        WebhookDeliverer(client: db, sealer: CredentialSealer(ring: try MasterKeyRing(parsing: TestApp.masterKeys)), transport: transport)
    }

    static func delivery(_ db: PostgresClient, endpointId: String) async throws -> (status: String, attempts: Int, next: Date?) {
        for try await row in try await db.query(
            "SELECT status, attempts, next_attempt_at FROM webhook_deliveries WHERE endpoint_id = \(endpointId) ORDER BY created_at LIMIT 1"
        ).decode((String, Int, Date?).self) { return row }
        throw XCTSkip("no delivery")
    }

    /// A receiver that always fails: attempts at 0, +5 s, +5 min, +30 min, +2 h, +5 h, +10 h, +10 h (the injected
    /// clock moves, nothing waits), then the delivery is failed; nothing is sent before it is due. Every attempt is
    /// signed with the endpoint's secret over `id.timestamp.body`, with the event id as `webhook-id`. Failing for 5
    /// days disables the endpoint, and its GET says so.
    func testRetryScheduleWithInjectedClockThenFailedThenEndpointDisabled() async throws {
        try await TestApp.run(Self.allowPrivateNoService) { client in
            let (_, admin) = try await client.signup()
            // The test database outlives the run: other runs' rows may be due too, so attempts are counted at this
            // test's own URL.
            let url = "http://127.0.0.1:9/hook/\(UUID().uuidString)"
            let created = try await client.call(.post, "/v1/webhook-endpoints", token: admin,
                                                json: ["url": url, "events": ["key.revoked"], "description": "ops"])
            XCTAssertEqual(created.status, .created, created.text)
            let secret = created.json["secret"] as? String ?? ""
            let endpointId = (created.json["endpoint"] as? [String: Any])?["id"] as? String ?? ""
            XCTAssertTrue(secret.hasPrefix("whsec_"))
            let shown = try await client.call(.get, "/v1/webhook-endpoints/\(endpointId)", token: admin)
            XCTAssertFalse(shown.text.contains(secret), "the secret is shown once")
            let key = try await client.createKey(admin: admin)
            expectStatus(try await client.call(.post, "/v1/keys/\(key.id)/revoke", token: admin), .ok)

            let transport = ScriptedTransport()
            transport.script.withLockedValue { $0 = Array(repeating: TransportResult(status: 500), count: 20) }
            try await TestDatabase.withClient { db in
                let d = try Self.deliverer(db, transport)
                let logger = Logger(label: "test")
                let t0 = Date().addingTimeInterval(1)
                var now = t0
                @Sendable func mine(at when: Date) async throws -> Int {
                    let before = transport.attempts.withLockedValue { $0.filter { $0.url == url }.count }
                    try await d.runOnce(now: when, logger: logger)
                    return transport.attempts.withLockedValue { $0.filter { $0.url == url }.count } - before
                }
                do { let n = try await mine(at: now); XCTAssertEqual(n, 1) }
                let expected: [TimeInterval] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
                for (i, delay) in expected.enumerated() {
                    let row = try await Self.delivery(db, endpointId: endpointId)
                    XCTAssertEqual(row.status, "pending")
                    XCTAssertEqual(row.attempts, i + 1)
                    XCTAssertEqual(row.next?.timeIntervalSince(now) ?? -1, delay, accuracy: 0.01, "after attempt \(i + 1)")
                    // Not due a moment before: nothing is sent.
                    do { let n = try await mine(at: now.addingTimeInterval(delay - 1)); XCTAssertEqual(n, 0) }
                    now = now.addingTimeInterval(delay)
                    do { let n = try await mine(at: now); XCTAssertEqual(n, 1, "attempt \(i + 2)") }
                }
                let last = try await Self.delivery(db, endpointId: endpointId)
                XCTAssertEqual(last.status, "failed")
                XCTAssertEqual(last.attempts, 8)
                do { let n = try await mine(at: now.addingTimeInterval(86_400)); XCTAssertEqual(n, 0) }
                let attempts = transport.attempts.withLockedValue { $0.filter { $0.url == url } }
                XCTAssertEqual(attempts.count, 8)
                let keyBytes = StandardWebhooks.key(of: secret)!
                for a in attempts {
                    let id = a.headers["webhook-id"] ?? ""
                    XCTAssertTrue(id.hasPrefix("evt_"))
                    let ts = Int64(a.headers["webhook-timestamp"] ?? "") ?? 0
                    XCTAssertEqual(a.headers["webhook-signature"], StandardWebhooks.signature(key: keyBytes, id: id, timestamp: ts, body: a.body))
                    let body = (try? JSONSerialization.jsonObject(with: Data(a.body))) as? [String: Any]
                    XCTAssertEqual(body?["id"] as? String, id)
                    XCTAssertEqual(body?["type"] as? String, "key.revoked")
                    XCTAssertEqual((body?["data"] as? [String: Any])?["key_id"] as? String, key.id)
                }
                XCTAssertEqual(Set(attempts.map { $0.headers["webhook-id"] ?? "" }).count, 1, "one event, one id, every attempt")
                // Still failing five days after the first failure: the endpoint is disabled and says why.
                let ping = try await client.call(.post, "/v1/webhook-endpoints/\(endpointId)/test", token: admin)
                XCTAssertEqual(ping.status, .accepted, ping.text)
                do { let n = try await mine(at: t0.addingTimeInterval(5 * 86_400 + 1)); XCTAssertEqual(n, 1) }
            }
            let disabled = try await client.call(.get, "/v1/webhook-endpoints/\(endpointId)", token: admin)
            XCTAssertEqual(disabled.json["enabled"] as? Bool, false, disabled.text)
            XCTAssertTrue((disabled.json["disabled_reason"] as? String ?? "").contains("5 days"), disabled.text)
            let deliveries = try await client.call(.get, "/v1/webhook-endpoints/\(endpointId)/deliveries", token: admin)
            let rows = deliveries.json["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(rows.count, 2, deliveries.text)
            XCTAssertEqual(Set(rows.compactMap { $0["event_type"] as? String }), ["key.revoked", "ping"])
            XCTAssertTrue(rows.allSatisfy { $0["last_status"] as? Int == 500 }, deliveries.text)
            // Re-enabled, redelivered, received.
            let enabled = try await client.call(.patch, "/v1/webhook-endpoints/\(endpointId)", token: admin, json: ["enabled": true])
            XCTAssertEqual(enabled.json["enabled"] as? Bool, true)
            XCTAssertTrue(enabled.json["disabled_reason"] is NSNull)
            expectStatus(try await client.call(.delete, "/v1/webhook-endpoints/\(endpointId)", token: admin), .noContent)
        }
    }

    /// Rotation: for 24 h deliveries carry two signatures, the new secret's and the old one's; both verify.
    /// Redelivery sends an event again under the same id. Another tenant sees 404 for every id.
    func testRotationSignsWithBothSecretsAndRedeliveryKeepsTheEventId() async throws {
        try await TestApp.run(Self.allowPrivateNoService) { client in
            let (_, admin) = try await client.signup()
            let url = "http://127.0.0.1:9/hook/\(UUID().uuidString)"
            let created = try await client.call(.post, "/v1/webhook-endpoints", token: admin, json: ["url": url])
            let old = created.json["secret"] as? String ?? ""
            let endpointId = (created.json["endpoint"] as? [String: Any])?["id"] as? String ?? ""
            let rotated = try await client.call(.post, "/v1/webhook-endpoints/\(endpointId)/rotate-secret", token: admin)
            XCTAssertEqual(rotated.status, .ok, rotated.text)
            let new = rotated.json["secret"] as? String ?? ""
            XCTAssertNotEqual(old, new)
            XCTAssertFalse((rotated.json["endpoint"] as? [String: Any])?["previous_secret_expires_at"] is NSNull)
            let key = try await client.createKey(admin: admin)
            expectStatus(try await client.call(.post, "/v1/keys/\(key.id)/revoke", token: admin), .ok)
            let events = try await client.call(.get, "/v1/events?type=key.revoked&key_id=\(key.id)", token: admin)
            let eventId = (events.json["data"] as? [[String: Any]])?.first?["id"] as? String ?? ""
            XCTAssertTrue(eventId.hasPrefix("evt_"), events.text)

            let transport = ScriptedTransport()
            try await TestDatabase.withClient { db in
                let d = try Self.deliverer(db, transport)
                try await d.runOnce(now: Date().addingTimeInterval(1), logger: Logger(label: "test"))
                let redo = try await client.call(.post, "/v1/events/\(eventId)/redeliver", token: admin)
                XCTAssertEqual(redo.status, .accepted, redo.text)
                try await d.runOnce(now: Date().addingTimeInterval(1), logger: Logger(label: "test"))
            }
            let attempts = transport.attempts.withLockedValue { $0.filter { $0.url == url } }
            XCTAssertEqual(attempts.map { $0.headers["webhook-id"] }, [eventId, eventId])
            for a in attempts {
                let ts = Int64(a.headers["webhook-timestamp"] ?? "") ?? 0
                let sigs = (a.headers["webhook-signature"] ?? "").split(separator: " ").map(String.init)
                XCTAssertEqual(sigs, [StandardWebhooks.signature(key: StandardWebhooks.key(of: new)!, id: eventId, timestamp: ts, body: a.body),
                                      StandardWebhooks.signature(key: StandardWebhooks.key(of: old)!, id: eventId, timestamp: ts, body: a.body)])
            }

            let (_, stranger) = try await client.signup(name: "Other")
            for (method, path) in [(HTTPRequest.Method.get, "/v1/webhook-endpoints/\(endpointId)"), (.patch, "/v1/webhook-endpoints/\(endpointId)"),
                                   (.delete, "/v1/webhook-endpoints/\(endpointId)"), (.post, "/v1/webhook-endpoints/\(endpointId)/rotate-secret"),
                                   (.post, "/v1/webhook-endpoints/\(endpointId)/test"), (.get, "/v1/webhook-endpoints/\(endpointId)/deliveries"),
                                   (.get, "/v1/events/\(eventId)"), (.post, "/v1/events/\(eventId)/redeliver")] {
                let r = try await client.call(method, path, token: stranger, json: method == .patch ? ["enabled": false] : nil)
                XCTAssertEqual(r.status, .notFound, "\(method) \(path): \(r.text)")
            }
            let theirs = try await client.call(.get, "/v1/events", token: stranger)
            XCTAssertEqual((theirs.json["data"] as? [Any])?.count, 0)
        }
    }

    func testEndpointValidationAndLifecycle() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            for (body, field) in [(["url": "http://hooks.example.com/x"], "url"), (["url": "https://127.0.0.1/x"], "url"),
                                  (["url": "https://hooks.example.com/x", "events": ["key.exploded"]], "events"),
                                  (["url": "https://hooks.example.com/x", "format": "xml"], "format"),
                                  (["url": "https://hooks.example.com/x", "secret": "whsec_mine"], "secret")] as [([String: Any], String)] {
                let r = try await client.call(.post, "/v1/webhook-endpoints", token: admin, json: body)
                XCTAssertEqual(r.status, .badRequest, r.text)
                XCTAssertEqual(r.errorField, field, r.text)
            }
            let created = try await client.call(.post, "/v1/webhook-endpoints", token: admin,
                                                json: ["url": "https://hooks.example.com/x", "format": "slack", "events": ["key.cap.reached"]])
            XCTAssertEqual(created.status, .created, created.text)
            let id = (created.json["endpoint"] as? [String: Any])?["id"] as? String ?? ""
            let list = try await client.call(.get, "/v1/webhook-endpoints?limit=1", token: admin)
            XCTAssertEqual((list.json["data"] as? [[String: Any]])?.first?["id"] as? String, id)
            XCTAssertTrue(list.json["next_cursor"] is NSNull)
            let patched = try await client.call(.patch, "/v1/webhook-endpoints/\(id)", token: admin, json: ["enabled": false, "description": "paused"])
            XCTAssertEqual(patched.json["enabled"] as? Bool, false, patched.text)
            XCTAssertEqual(patched.json["disabled_reason"] as? String, "disabled by the tenant")
            let badCursor = try await client.call(.get, "/v1/events?cursor=nope", token: admin)
            XCTAssertEqual(badCursor.errorField, "cursor")
            let badFrom = try await client.call(.get, "/v1/events?from=yesterday", token: admin)
            XCTAssertEqual(badFrom.errorField, "from")
            expectStatus(try await client.call(.delete, "/v1/webhook-endpoints/\(id)", token: admin), .noContent)
            expectStatus(try await client.call(.get, "/v1/webhook-endpoints/\(id)", token: admin), .notFound)
        }
    }
}
