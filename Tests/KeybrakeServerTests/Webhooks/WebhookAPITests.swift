import Foundation
import HummingbirdTesting
import KeybrakeServer
import XCTest

/// `/v1/webhook-endpoints` and `/v1/events` (DESIGN §14).
final class WebhookAPITests: XCTestCase {
    func testEndpointLifecycleShowsTheSecretOnceAndIsTenantScoped() async throws {
        let logs = LogCapture()
        try await TestApp.run(logs: logs, { $0.webhooks.delivers = false }) { client in
            let (_, admin) = try await client.signup()
            let created = try await client.call(.post, "/v1/webhook-endpoints", token: admin,
                                                json: ["url": "https://hooks.example.com/kb", "events": ["key.cap.reached", "key.spend.threshold_crossed"],
                                                       "description": "ops channel"])
            expectStatus(created, .created)
            let secret = try XCTUnwrap(created.json["secret"] as? String)
            XCTAssertTrue(secret.hasPrefix("whsec_"))
            let endpoint = try XCTUnwrap(created.json["endpoint"] as? [String: Any])
            let id = try XCTUnwrap(endpoint["id"] as? String)
            XCTAssertTrue(id.hasPrefix("whe_"))
            XCTAssertEqual(endpoint["events"] as? [String], ["key.cap.reached", "key.spend.threshold_crossed"])
            XCTAssertEqual(endpoint["enabled"] as? Bool, true)
            XCTAssertEqual(endpoint["format"] as? String, "standard")

            let shown = try await client.call(.get, "/v1/webhook-endpoints/\(id)", token: admin)
            expectStatus(shown, .ok)
            XCTAssertFalse(shown.text.contains(secret), "the secret is shown once")
            XCTAssertNil((shown.json["endpoint"] as? [String: Any])?["secret"])

            let patched = try await client.call(.patch, "/v1/webhook-endpoints/\(id)", token: admin, json: ["events": NSNull(), "enabled": false])
            expectStatus(patched, .ok)
            XCTAssertTrue((patched.json["endpoint"] as? [String: Any])?["events"] is NSNull, "null: every event type")
            XCTAssertEqual((patched.json["endpoint"] as? [String: Any])?["enabled"] as? Bool, false)

            let list = try await client.call(.get, "/v1/webhook-endpoints?limit=1", token: admin)
            expectStatus(list, .ok)
            XCTAssertEqual((list.json["data"] as? [[String: Any]])?.count, 1)

            // Another tenant sees none of it.
            let (_, other) = try await client.signup(name: "Other")
            expectStatus(try await client.call(.get, "/v1/webhook-endpoints/\(id)", token: other), .notFound)
            expectStatus(try await client.call(.patch, "/v1/webhook-endpoints/\(id)", token: other, json: ["enabled": true]), .notFound)
            expectStatus(try await client.call(.post, "/v1/webhook-endpoints/\(id)/rotate-secret", token: other), .notFound)
            expectStatus(try await client.call(.post, "/v1/webhook-endpoints/\(id)/test", token: other), .notFound)
            expectStatus(try await client.call(.get, "/v1/webhook-endpoints/\(id)/deliveries", token: other), .notFound)
            expectStatus(try await client.call(.delete, "/v1/webhook-endpoints/\(id)", token: other), .notFound)
            let otherList = try await client.call(.get, "/v1/webhook-endpoints", token: other)
            XCTAssertEqual((otherList.json["data"] as? [[String: Any]])?.count, 0)

            expectStatus(try await client.call(.delete, "/v1/webhook-endpoints/\(id)", token: admin), .noContent)
            expectStatus(try await client.call(.get, "/v1/webhook-endpoints/\(id)", token: admin), .notFound)
        }
        XCTAssertFalse(logs.text.contains("whsec_"), "no secret in the log")
    }

    func testBadEndpointsAreRefusedNamingTheField() async throws {
        try await TestApp.run({ $0.webhooks.delivers = false }) { client in
            let (_, admin) = try await client.signup()
            for (body, field) in [
                (["url": "http://hooks.example.com/kb"], "url"),
                (["url": "https://127.0.0.1/kb"], "url"),
                (["url": "https://169.254.169.254/latest/meta-data"], "url"),
                (["url": "https://localhost/kb"], "url"),
                (["url": "https://hooks.example.com/kb", "events": ["key.spent"]], "events"),
                (["url": "https://hooks.example.com/kb", "events": [String]()], "events"),
                (["url": "https://hooks.example.com/kb", "format": "teams"], "format"),
                (["url": "https://hooks.example.com/kb", "secret": "whsec_x"], "secret"),
                ([String: Any](), "url"),
            ] as [([String: Any], String)] {
                let r = try await client.call(.post, "/v1/webhook-endpoints", token: admin, json: body)
                expectStatus(r, .badRequest, "\(body)")
                XCTAssertEqual(r.errorField, field, "\(body)")
            }
        }
        // On-prem and tests may allow plain http and private addresses.
        try await TestApp.run({ $0.webhooks.delivers = false; $0.webhooks.allowPrivate = true }) { client in
            let (_, admin) = try await client.signup()
            expectStatus(try await client.call(.post, "/v1/webhook-endpoints", token: admin, json: ["url": "http://127.0.0.1:9/kb"]), .created)
        }
    }

    /// Keys' alert thresholds: validated, shown, inherited; revoking a key writes `key.revoked`, listed by GET /v1/events
    /// with its filters, and redeliverable.
    func testAlertThresholdsRevocationEventAndEventsList() async throws {
        try await TestApp.run({ $0.webhooks.delivers = false }) { client in
            let (_, admin) = try await client.signup()
            for bad in [[0], [101], [50, 50], Array(1...11)] {
                let r = try await client.call(.post, "/v1/keys", token: admin, json: ["vendor": "stripe", "label": "a", "allowed_endpoints": ["POST /v1/charges"],
                                                                                      "daily_usd_cap": 10, "alert_thresholds": bad])
                expectStatus(r, .badRequest, "\(bad)")
                XCTAssertEqual(r.errorField, "alert_thresholds")
            }
            let (keyId, _) = try await client.createKey(admin: admin, ["alert_thresholds": [90, 25]])
            let shown = try await client.call(.get, "/v1/keys/\(keyId)", token: admin)
            XCTAssertEqual((shown.json["key"] as? [String: Any])?["alert_thresholds"] as? [Int], [25, 90], shown.text)
            let reset = try await client.call(.patch, "/v1/keys/\(keyId)", token: admin, json: ["alert_thresholds": NSNull()])
            XCTAssertEqual((reset.json["key"] as? [String: Any])?["alert_thresholds"] as? [Int], [50, 80, 100], reset.text)

            let endpoint = try await client.call(.post, "/v1/webhook-endpoints", token: admin, json: ["url": "https://hooks.example.com/kb"])
            let endpointId = (endpoint.json["endpoint"] as? [String: Any])?["id"] as? String ?? ""
            expectStatus(try await client.call(.post, "/v1/keys/\(keyId)/revoke", token: admin), .ok)
            expectStatus(try await client.call(.post, "/v1/keys/\(keyId)/revoke", token: admin), .ok)
            let events = try await client.call(.get, "/v1/events?type=key.revoked&key_id=\(keyId)", token: admin)
            expectStatus(events, .ok)
            let data = try XCTUnwrap(events.json["data"] as? [[String: Any]])
            XCTAssertEqual(data.count, 1, "revoking twice writes one event: \(events.text)")
            let event = try XCTUnwrap(data.first)
            let eventId = try XCTUnwrap(event["id"] as? String)
            XCTAssertTrue(eventId.hasPrefix("evt_"))
            XCTAssertEqual((event["data"] as? [String: Any])?["key_id"] as? String, keyId)
            XCTAssertEqual((event["data"] as? [String: Any])?["key_label"] as? String, "billing-agent")
            expectStatus(try await client.call(.get, "/v1/events?type=key.cap.reached", token: admin), .ok)
            let capped = try await client.call(.get, "/v1/events?type=key.cap.reached", token: admin)
            XCTAssertEqual((capped.json["data"] as? [[String: Any]])?.count, 0)
            expectStatus(try await client.call(.get, "/v1/events?type=nope", token: admin), .badRequest)
            expectStatus(try await client.call(.get, "/v1/events?from=yesterday", token: admin), .badRequest)
            expectStatus(try await client.call(.get, "/v1/events/\(eventId)", token: admin), .ok)

            let redelivered = try await client.call(.post, "/v1/events/\(eventId)/redeliver", token: admin)
            expectStatus(redelivered, .accepted)
            XCTAssertEqual(redelivered.json["endpoint_ids"] as? [String], [endpointId])
            let deliveries = try await client.call(.get, "/v1/webhook-endpoints/\(endpointId)/deliveries", token: admin)
            XCTAssertEqual((deliveries.json["data"] as? [[String: Any]])?.count, 2, "the original delivery and the redelivery: \(deliveries.text)")

            let (_, other) = try await client.signup(name: "Other")
            expectStatus(try await client.call(.get, "/v1/events/\(eventId)", token: other), .notFound)
            expectStatus(try await client.call(.post, "/v1/events/\(eventId)/redeliver", token: other), .notFound)
            let others = try await client.call(.get, "/v1/events", token: other)
            XCTAssertEqual((others.json["data"] as? [[String: Any]])?.count, 0)
        }
    }
}
