import Foundation
import HTTPTypes
import HummingbirdTesting
import XCTest

final class ProxyIdempotencyTests: XCTestCase {
    let charge = [("amount", "2000"), ("currency", "usd"), ("customer", "cus_1"), ("description", "Pro plan")]

    func testSameKeyRetriedSequentiallyAndConcurrentlyMovesMoneyOnce() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(50) }
        let charge = self.charge
        let keyId = try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            var bodies: [String] = []
            var replayed: [String?] = []
            for _ in 0..<5 {
                let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge, headers: ["Idempotency-Key": "agent-run-1-charge"])
                expectStatus(r, .ok)
                bodies.append(r.text)
                replayed.append(r.headers[HTTPField.Name("Idempotent-Replayed")!])
            }
            XCTAssertEqual(Set(bodies).count, 1, "identical responses")
            XCTAssertEqual(replayed, [nil, "true", "true", "true", "true"])

            // Another operation (its own body), retried 5 times at once with one key.
            let charge2 = Array(charge.prefix(3)) + [("description", "Pro plan, seat 2")]
            let concurrent = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<5 {
                    group.addTask {
                        let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge2, headers: ["Idempotency-Key": "agent-run-2-charge"])
                        XCTAssertEqual(r.status, .ok, r.text)
                        return r.text
                    }
                }
                var all: [String] = []
                for try await b in group { all.append(b) }
                return all
            }
            XCTAssertEqual(Set(concurrent).count, 1, "concurrent retries all see the one charge")
            if Set(concurrent).count != 1 { print(h.logs.text.split(separator: "\n").filter { $0.contains("error") }.joined(separator: "\n")) }

            let reused = try await client.proxy(.post, "/stripe/v1/charges", key: token,
                                                form: [("amount", "9900"), ("currency", "usd")], headers: ["Idempotency-Key": "agent-run-1-charge"])
            expectStatus(reused, .badRequest)
            let err = reused.json["error"] as? [String: Any]
            XCTAssertEqual(err?["code"] as? String, "idempotency_key_reused")
            XCTAssertEqual(err?["type"] as? String, "idempotency_error", "stripe-python raises IdempotencyError")
            return keyId
        }
        XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 2, "one upstream call per idempotency key")
        let keys = Set(h.fake.requests(path: "/v1/charges").compactMap { $0.headers["idempotency-key"] })
        XCTAssertEqual(keys, ["agent-run-1-charge", "agent-run-2-charge"], "agent keys are forwarded unchanged")
        do { let v = try await Ledger.day(keyId); XCTAssertEqual(v.settled, 40_000_000) }
        let audit = try await Ledger.audit(keyId)
        XCTAssertEqual(audit.filter { $0.decision == "allowed" }.count, 2)
        XCTAssertEqual(audit.filter { $0.decision == "replayed" }.count, 8)
        XCTAssertTrue(audit.filter { $0.decision == "replayed" }.allSatisfy { $0.amount == 0 && $0.duplicateOf != nil })
        XCTAssertEqual(audit.filter { $0.errorCode == "idempotency_key_reused" }.count, 1)
    }

    /// The briefs' failure modes: a flow retry, a duplicate webhook, parallel tool calls all arrive with a
    /// *new random* Idempotency-Key (SDKs add one per call) but the same body.
    func testDuplicateGuardCatchesSameBodyWithNewRandomKeys() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(50) }
        let charge = self.charge
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            let first = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge, headers: ["Idempotency-Key": UUID().uuidString])
            expectStatus(first, .ok)
            let retry = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge.reversed(), headers: ["Idempotency-Key": UUID().uuidString])
            expectStatus(retry, .ok)
            XCTAssertEqual(retry.headers[HTTPField.Name("Idempotent-Replayed")!], "true")
            XCTAssertNotNil(retry.headers[HTTPField.Name("Keybrake-Duplicate-Of")!])
            XCTAssertEqual(retry.json["id"] as? String, first.json["id"] as? String)

            // Ten parallel tool calls with the same arguments: one charge, nobody sees an error.
            let parallel = Array(charge.prefix(3)) + [("description", "Setup fee")]
            let ids = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: parallel, headers: ["Idempotency-Key": UUID().uuidString])
                        XCTAssertEqual(r.status, .ok, r.text)
                        return r.json["id"] as? String ?? ""
                    }
                }
                var all: [String] = []
                for try await id in group { all.append(id) }
                return all
            }
            XCTAssertEqual(Set(ids).count, 1)
            // A legitimately repeated operation differs in its body: it goes through.
            var renewal = charge
            renewal[3] = ("description", "Renewal 2026-12")
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: renewal, headers: ["Idempotency-Key": UUID().uuidString]), .ok)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v.settled, 60_000_000) }
        }
        XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 3)
    }

    func testDuplicateGuardCanBeTurnedOffPerKey() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        let charge = self.charge
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "duplicate_window_seconds": 0])
            for _ in 0..<2 {
                let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge, headers: ["Idempotency-Key": UUID().uuidString])
                XCTAssertNil(r.headers[HTTPField.Name("Idempotent-Replayed")!])
            }
        }
        XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 2)
    }

    func testAutoIdempotencyKeyWhenTheAgentSendsNone() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        let charge = self.charge
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "duplicate_window_seconds": 0])
            let first = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge)
            let second = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge)
            let autoKey = first.headers[HTTPField.Name("Keybrake-Idempotency-Key")!]
            XCTAssertNotNil(autoKey)
            XCTAssertTrue(autoKey?.hasPrefix("kb_\(keyId.dropFirst(4))_") ?? false)
            XCTAssertEqual(second.headers[HTTPField.Name("Keybrake-Idempotency-Key")!], autoKey)
            XCTAssertEqual(second.headers[HTTPField.Name("Idempotent-Replayed")!], "true")
        }
        XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 1)
    }

    func testRetryOfAnUnknownOutcomeSettlesTheHeldReservation() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        let charge = self.charge
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            h.fake.setFault(.status(500))
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge, headers: ["Idempotency-Key": "k-unknown"]), .internalServerError)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v.unknown, 20_000_000) }
            h.fake.setFault(.none)
            // The SDK retries with a new random key: the duplicate guard finds the unknown outcome and resends
            // with the original Idempotency-Key so Stripe itself dedupes; the held reservation settles.
            let retry = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge, headers: ["Idempotency-Key": "k-random-2"])
            expectStatus(retry, .ok)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 20_000_000, reserved: 0, unknown: 0), "no second reservation") }
            let again = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge, headers: ["Idempotency-Key": "k-random-3"])
            XCTAssertEqual(again.headers[HTTPField.Name("Idempotent-Replayed")!], "true")
        }
        let sent = h.fake.requests(path: "/v1/charges").map { $0.headers["idempotency-key"] ?? "" }
        XCTAssertEqual(sent, ["k-unknown", "k-unknown"])
    }

    func testTwilioDuplicateSMSIsSentOnceAndUnknownOutcomesAreRefused() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["vendor": "twilio", "allowed_endpoints": ["POST /2010-04-01/Accounts/*/Messages.json"], "daily_usd_cap": 1])
            let sms = [("To", "+15550001111"), ("From", "+15550002222"), ("Body", "Your code is 123456")]
            let path = "/twilio/2010-04-01/Accounts/ACx/Messages.json"
            let first = try await client.proxy(.post, path, key: token, form: sms, basicAuth: true)
            expectStatus(first, .created)
            let second = try await client.proxy(.post, path, key: token, form: sms, basicAuth: true)
            expectStatus(second, .created)
            XCTAssertEqual(second.headers[HTTPField.Name("Idempotent-Replayed")!], "true")
            XCTAssertEqual(second.json["sid"] as? String, first.json["sid"] as? String)

            h.fake.setFault(.status(503))
            let other = [("To", "+15550003333"), ("From", "+15550002222"), ("Body", "Hi")]
            expectStatus(try await client.proxy(.post, path, key: token, form: other, basicAuth: true), .serviceUnavailable)
            h.fake.setFault(.none)
            let retry = try await client.proxy(.post, path, key: token, form: other, basicAuth: true)
            expectStatus(retry, .conflict)
            XCTAssertEqual(retry.headers[HTTPField.Name("Keybrake-Error-Code")!], "outcome_unknown")
            XCTAssertTrue((retry.json["message"] as? String ?? "").contains("aud_"), retry.text)
        }
        XCTAssertEqual(h.fake.requests(method: "POST").count, 2, "a duplicate SMS never reaches Twilio")
    }

    func testWaitingPastTheBoundGets409ThatSDKsRetry() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(1500) }
        let charge = self.charge
        try await h.run({ $0.proxy.inFlightWait = .milliseconds(300); $0.proxy.upstreamTimeout = .seconds(5) }) { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            async let first = client.proxy(.post, "/stripe/v1/charges", key: token, form: charge, headers: ["Idempotency-Key": "slow-1"])
            try await Task.sleep(for: .milliseconds(400))
            let second = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge, headers: ["Idempotency-Key": "slow-1"])
            expectStatus(second, .conflict)
            XCTAssertEqual((second.json["error"] as? [String: Any])?["code"] as? String, "idempotency_key_in_use")
            XCTAssertNil(second.headers[HTTPField.Name("Stripe-Should-Retry")!], "SDKs may retry this 409 and then get the replay")
            let third = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge, headers: ["Idempotency-Key": "other-random"])
            XCTAssertEqual((third.json["error"] as? [String: Any])?["code"] as? String, "duplicate_in_flight")
            expectStatus(try await first, .ok)
            let retried = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: charge, headers: ["Idempotency-Key": "slow-1"])
            XCTAssertEqual(retried.headers[HTTPField.Name("Idempotent-Replayed")!], "true", "\(retried.status) \(retried.text)")
        }
        XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 1)
    }
}
