import Foundation
import HTTPTypes
import NIOCore
import HummingbirdTesting
import XCTest

final class ProxyRoutingTests: XCTestCase {
    func testHostBasedRoutingAndKeyHeaderVariants() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["allowed_endpoints": ["GET /v1/customers/*", "POST /v1/customers"]])
            // stripe-node only sets a host: `Host: stripe.<domain>` serves Stripe at the root.
            let byHost = try await client.execute(uri: "/v1/customers", method: .post,
                                                  headers: [.authorization: "Bearer \(token)", HTTPField.Name("Host")!: "stripe.keybrake.test:8080",
                                                            .contentType: "application/x-www-form-urlencoded"],
                                                  body: ByteBuffer(string: "email=a%40b.co"))
            XCTAssertEqual(byHost.status, .ok, String(buffer: byHost.body))
            let viaHeader = try await client.execute(uri: "/stripe/v1/customers", method: .post,
                                                     headers: [HTTPField.Name("X-Keybrake-Key")!: token, .contentType: "application/x-www-form-urlencoded"],
                                                     body: ByteBuffer(string: "email=c%40d.co"))
            XCTAssertEqual(viaHeader.status, .ok)
            // The admin API is untouched by host routing for other hosts.
            expectStatus(try await client.call(.get, "/v1/tenant", token: t.admin), .ok)
        }
        let created = h.fake.requests(path: "/v1/customers", method: "POST")
        XCTAssertEqual(created.count, 2)
        XCTAssertTrue(created.allSatisfy { $0.headers["authorization"] == "Bearer \(ProxyHarness.stripeSecret)" && $0.headers["x-keybrake-key"] == nil })
    }

    func testBodyLimitRateLimitAndMetrics() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["allowed_endpoints": ["POST /v1/customers", "GET /v1/customers/*"], "rate_limit_per_minute": 3])
            let big = String(repeating: "x", count: (1 << 20) + 10)
            let tooLarge = try await client.proxy(.post, "/stripe/v1/customers", key: token, form: [("description", big)])
            expectStatus(tooLarge, .contentTooLarge)
            XCTAssertEqual((tooLarge.json["error"] as? [String: Any])?["code"] as? String, "body_too_large")
            for _ in 0..<2 { _ = try await client.proxy(.get, "/stripe/v1/customers/cus_x", key: token) }
            let limited = try await client.proxy(.get, "/stripe/v1/customers/cus_x", key: token)
            expectStatus(limited, .tooManyRequests)
            XCTAssertEqual((limited.json["error"] as? [String: Any])?["code"] as? String, "rate_limited")
            XCTAssertNotNil(limited.headers[.retryAfter])
            let audit = try await Ledger.audit(keyId)
            XCTAssertEqual(audit.compactMap(\.errorCode), ["body_too_large", "rate_limited"])
            let metrics = try await client.call(.get, "/metrics", token: TestApp.metricsToken)
            expectStatus(metrics, .ok)
            XCTAssertTrue(metrics.text.contains("keybrake_proxy_requests_total{"), metrics.text.prefix(500).description)
            XCTAssertTrue(metrics.text.contains("code=\"rate_limited\""))
            XCTAssertTrue(metrics.text.contains("keybrake_upstream_duration_seconds"))
        }
    }

    func testStripeLookupsPriceAmountlessRequests() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 1000,
                "allowed_endpoints": ["POST /v1/payment_intents", "POST /v1/payment_intents/*/confirm", "POST /v1/refunds", "POST /v1/charges"]])
            // Created through Keybrake (priced at create): confirming it is not counted twice.
            let pi = try await client.proxy(.post, "/stripe/v1/payment_intents", key: token, form: [("amount", "5000"), ("currency", "usd")])
            expectStatus(pi, .ok)
            let piId = try XCTUnwrap(pi.json["id"] as? String)
            expectStatus(try await client.proxy(.post, "/stripe/v1/payment_intents/\(piId)/confirm", key: token), .ok)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v.settled, 50_000_000) }
            // Created elsewhere: the confirm is priced by looking the PaymentIntent up.
            h.fake.objects.withLockedValue { $0["pi_outside"] = ["id": "pi_outside", "object": "payment_intent", "amount": 700, "currency": "usd"] }
            expectStatus(try await client.proxy(.post, "/stripe/v1/payment_intents/pi_outside/confirm", key: token), .ok)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v.settled, 57_000_000) }
            // A refund without amount refunds what is left of the charge.
            let ch = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1200"), ("currency", "usd")])
            let chId = try XCTUnwrap(ch.json["id"] as? String)
            expectStatus(try await client.proxy(.post, "/stripe/v1/refunds", key: token, form: [("charge", chId)]), .ok)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v.settled, 57_000_000 + 12_000_000 + 12_000_000) }
            let missing = try await client.proxy(.post, "/stripe/v1/refunds", key: token, form: [("charge", "ch_nope")])
            XCTAssertEqual((missing.json["error"] as? [String: Any])?["code"] as? String, "amount_required")
        }
    }
}
