import Foundation
import HTTPTypes
import HummingbirdTesting
import KeybrakeCore
import KeybrakeServer
import Proxy
import XCTest

/// The upstream connection budget (issue 14): a burst above it waits a bounded time, then gets 503 `upstream_busy`
/// with `Retry-After` — nothing forwarded, nothing left reserved. Not timed: the fake vendor holds the requests
/// that fill the budget until the test opens its gate.
final class UpstreamBudgetTests: XCTestCase, @unchecked Sendable {
    func code(_ r: HTTPResult) -> String? { r.headers[HTTPField.Name("Keybrake-Error-Code")!] }

    func charge(_ op: String) -> [(String, String)] {
        [("amount", "100"), ("currency", "usd"), ("metadata[op]", op)]
    }

    /// Polls until `condition` holds (bounded: fails the test instead of hanging).
    func eventually(_ what: String, _ condition: () -> Bool) async throws {
        for _ in 0..<2000 {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        XCTFail("never happened: \(what)")
    }

    func testABurstAboveTheConnectionBudgetIs503UpstreamBusyWithNothingForwardedOrReserved() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run({ config in
            config.proxy.upstreamTimeout = .seconds(30)
            config.proxy.upstream.maxInFlightByVendor[.stripe] = 2
            config.proxy.upstream.busyWait = .milliseconds(50)
        }) { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            h.fake.held.withLockedValue { $0 = true }

            // Two charges fill Stripe's budget and stay in flight at the vendor.
            let inFlight = Task {
                try await withThrowingTaskGroup(of: HTTPResult.self) { group in
                    for op in ["a", "b"] { group.addTask { try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(op)) } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            try await self.eventually("both charges reach the vendor") { h.fake.requests(path: "/v1/charges").count == 2 }

            // The burst: every one waits its bounded time, then is refused, while the first two are still held.
            let burst = try await withThrowingTaskGroup(of: HTTPResult.self) { group in
                for i in 0..<6 { group.addTask { try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge("burst\(i)")) } }
                return try await group.reduce(into: [HTTPResult]()) { $0.append($1) }
            }
            for r in burst {
                XCTAssertEqual(r.status.code, 503, r.text)
                XCTAssertEqual(self.code(r), "upstream_busy", r.text)
                XCTAssertEqual(r.headers[.retryAfter], "1")
                XCTAssertNil(r.headers[HTTPField.Name("Stripe-Should-Retry")!], "the SDK may retry: nothing was sent")
                XCTAssertEqual(((r.json["error"] as? [String: Any])?["type"] as? String), "api_error", "Stripe's envelope")
            }
            XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 2, "nothing of the burst was forwarded")
            do {
                let v = try await Ledger.day(keyId)
                XCTAssertEqual(v, .init(settled: 0, reserved: 2_000_000, unknown: 0), "only the two in flight are reserved")
            }

            h.fake.held.withLockedValue { $0 = false }
            for r in try await inFlight.value { expectStatus(r, .ok) }
            do {
                let v = try await Ledger.day(keyId)
                XCTAssertEqual(v, .init(settled: 2_000_000, reserved: 0, unknown: 0), "the refused burst left nothing reserved")
            }
            let busyRows = try await Ledger.audit(keyId).filter { $0.errorCode == "upstream_busy" }
            XCTAssertEqual(busyRows.count, 6)
            XCTAssertTrue(busyRows.allSatisfy { $0.outcome == "released" && $0.upstreamStatus == nil }, "\(busyRows)")

            // The budget is free again, and a refused request's retry goes through (its records were dropped).
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge("burst0")), .ok)
            XCTAssertEqual(h.fake.moved.count, 3)
        }
    }

    func testALookupThatFindsTheBudgetFullIs503UpstreamBusy() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run({ config in
            config.proxy.upstreamTimeout = .seconds(30)
            config.proxy.upstream.maxInFlightByVendor[.stripe] = 1
            config.proxy.upstream.busyWait = .zero
        }) { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "allowed_endpoints": ["POST /v1/charges", "POST /v1/payment_intents/*/confirm"]])
            h.fake.held.withLockedValue { $0 = true }
            let first = Task { try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge("a")) }
            try await self.eventually("the charge reaches the vendor") { h.fake.requests(path: "/v1/charges").count == 1 }
            let confirm = try await client.proxy(.post, "/stripe/v1/payment_intents/pi_123/confirm", key: token)
            XCTAssertEqual(confirm.status.code, 503, confirm.text)
            XCTAssertEqual(self.code(confirm), "upstream_busy")
            XCTAssertTrue(h.fake.requests(path: "/v1/payment_intents/pi_123").isEmpty, "the lookup was not sent either")
            h.fake.held.withLockedValue { $0 = false }
            expectStatus(try await first.value, .ok)
        }
    }

    /// A read streams its answer (3 MiB here, many chunks) and gives its slot back when the body has been sent: with a
    /// budget of one, each next read would wait out the bounded wait and get 503 if a slot leaked.
    func testAReadStreamsItsAnswerAndGivesItsSlotBack() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run({ config in
            config.proxy.upstream.maxInFlightByVendor[.stripe] = 1
            config.proxy.upstream.busyWait = .seconds(5)
        }) { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["allowed_endpoints": ["GET /v1/customers/*"]])
            let big = String(repeating: "x", count: 3 << 20)
            h.fake.objects.withLockedValue { $0["cus_big"] = ["id": "cus_big", "object": "customer", "description": big] }
            for _ in 0..<3 {
                let r = try await client.proxy(.get, "/stripe/v1/customers/cus_big", key: token)
                expectStatus(r, .ok)
                XCTAssertEqual((r.json["description"] as? String)?.count, big.count, "the whole body arrived")
                XCTAssertNotNil(r.headers[HTTPField.Name("Request-Id")!])
            }
        }
    }
}
