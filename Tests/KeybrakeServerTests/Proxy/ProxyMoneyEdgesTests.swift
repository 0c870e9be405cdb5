import Foundation
import HTTPTypes
import HummingbirdTesting
import XCTest

/// The numbered cases of the money-edges issue, each against a vendor fake that counts the money it really moved
/// (`FakeVendors.moved`) and deduplicates on Idempotency-Key as Stripe and Resend do.
final class ProxyMoneyEdgesTests: XCTestCase, @unchecked Sendable {
    func code(_ r: HTTPResult) -> String? { r.headers[HTTPField.Name("Keybrake-Error-Code")!] }

    func charge(_ amount: Int, _ op: String) -> [(String, String)] {
        [("amount", String(amount)), ("currency", "usd"), ("metadata[op]", op)]
    }

    /// Case 1: the answer of a $100 charge is lost; the retry (same key) meets a 409, 429, 401 or 400. None of those
    /// says anything about the first attempt: the $100 stays counted and the next $100 charge is refused by the cap.
    func testA4xxOnTheRetryOfAnUnknownOutcomeKeepsItCounted() async throws {
        for status in [409, 429, 401, 400] {
            let h = try await ProxyHarness.start()
            defer { h.fake.stop() }
            try await h.run { client in
                let t = try await client.tenantWithCredentials()
                let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
                h.fake.faultQueue.withLockedValue { $0 = [.actThenStatus(502), .status(status)] }
                let first = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(10_000, "a"), headers: ["Idempotency-Key": "k1"])
                XCTAssertEqual(first.status.code, 502)
                let retry = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(10_000, "a"), headers: ["Idempotency-Key": "k1"])
                XCTAssertEqual(retry.status.code, status, "the vendor's answer is passed through")
                do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 0, reserved: 0, unknown: 100_000_000), "after \(status)") }
                let next = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(10_000, "b"))
                expectStatus(next, .tooManyRequests, "the unknown $100 still counts after a \(status) on its retry")
                // A later retry that meets a 2xx (the vendor replays the first attempt's charge) settles it, once.
                let settled = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(10_000, "a"), headers: ["Idempotency-Key": "k1"])
                expectStatus(settled, .ok)
                do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 100_000_000, reserved: 0, unknown: 0)) }
            }
            XCTAssertEqual(h.fake.moved.map(\.amount), [10_000], "$100 moved once, after a \(status)")
        }
    }

    /// A retry of an unknown outcome that meets another 5xx lists an unknown outcome of its own, which `resolves` the
    /// request it retried: the money is that request's reservation. Resolving either row resolves it, once (the
    /// retry's row used to answer 409 `outcome_not_unknown`: its own id has no reservation).
    func testResolvingARetrysUnknownOutcomeResolvesTheRequestItRetried() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            h.fake.faultQueue.withLockedValue { $0 = [.actThenStatus(502), .status(502)] }
            for _ in 0..<2 {
                let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(4_000, "r"), headers: ["Idempotency-Key": "k-r"])
                XCTAssertEqual(r.status.code, 502)
            }
            let listed = (try await client.call(.get, "/v1/audit?key_id=\(keyId)&outcome=outcome_unknown", token: t.admin).json["data"] as? [[String: Any]]) ?? []
            XCTAssertEqual(listed.count, 2, "the request and its retry are both listed")
            let first = try XCTUnwrap(listed.first { $0["resolves"] == nil || $0["resolves"] is NSNull }?["id"] as? String)
            let retry = try XCTUnwrap(listed.first { $0["resolves"] as? String == first }?["id"] as? String)
            let resolved = try await client.call(.post, "/v1/audit/\(retry)/resolve", token: t.admin, json: ["outcome": "settled", "amount_usd": 40])
            expectStatus(resolved, .created)
            XCTAssertEqual((resolved.json["event"] as? [String: Any])?["resolves"] as? String, first)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 40_000_000, reserved: 0, unknown: 0)) }
            let again = try await client.call(.post, "/v1/audit/\(first)/resolve", token: t.admin, json: ["outcome": "released"])
            expectStatus(again, .conflict)
            XCTAssertEqual(again.errorCode, "outcome_already_resolved")
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 40_000_000, reserved: 0, unknown: 0), "resolved once") }
        }
        XCTAssertEqual(h.fake.moved.map(\.amount), [4_000])
    }

    /// Case 2: `auto_idempotency: false` and no key from the client. The first charge still goes upstream with a key,
    /// so the identical retry of its unknown outcome resends that key and the vendor cannot charge twice.
    func testARetryOfAnUnknownOutcomeWithoutAClientKeyIsSentWithTheFirstAttemptsKey() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 300, "auto_idempotency": false])
            h.fake.faultQueue.withLockedValue { $0 = [.actThenStatus(502)] }
            let first = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(10_000, "a"))
            XCTAssertEqual(first.status.code, 502)
            let retry = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(10_000, "a"))
            expectStatus(retry, .ok)
            XCTAssertNotNil(retry.headers[HTTPField.Name("Keybrake-Duplicate-Of")!], "the retry resolves the first attempt")
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 100_000_000, reserved: 0, unknown: 0)) }

            // Resend: the same rule.
            let mail = try await client.vaultKey(t, ["vendor": "resend", "allowed_endpoints": ["POST /emails"], "daily_usd_cap": 1, "auto_idempotency": false])
            h.fake.faultQueue.withLockedValue { $0 = [.actThenStatus(500)] }
            let email: [String: Any] = ["from": "a@b.co", "to": ["c@d.co"], "subject": "hi", "text": "once"]
            do { let r = try await client.proxy(.post, "/resend/emails", key: mail.token, json: email); XCTAssertEqual(r.status.code, 500) }
            expectStatus(try await client.proxy(.post, "/resend/emails", key: mail.token, json: email), .ok)
        }
        let keys = h.fake.requests(path: "/v1/charges").map { $0.headers["idempotency-key"] }
        XCTAssertEqual(keys.count, 2)
        XCTAssertNotNil(keys[0])
        XCTAssertEqual(keys[0], keys[1], "the retry carried the first attempt's upstream key")
        XCTAssertEqual(h.fake.moved.filter { $0.path == "/v1/charges" }.map(\.amount), [10_000], "charged once")
        XCTAssertEqual(h.fake.moved.filter { $0.path == "/emails" }.count, 1, "one email")
    }

    /// Case 3: a PaymentIntent created for $1, raised to $5,000 by an update, then confirmed: the confirm is priced
    /// at the PaymentIntent's current amount, and refused by the key's limits.
    func testAPaymentIntentRaisedThenConfirmedIsPricedAtItsCurrentAmount() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["max_request_usd": 1, "daily_usd_cap": 5, "allowed_endpoints": [
                "POST /v1/payment_intents", "POST /v1/payment_intents/*", "POST /v1/payment_intents/*/confirm"]])
            let created = try await client.proxy(.post, "/stripe/v1/payment_intents", key: token, form: [("amount", "100"), ("currency", "usd")])
            expectStatus(created, .ok)
            let id = created.json["id"] as? String ?? ""
            expectStatus(try await client.proxy(.post, "/stripe/v1/payment_intents/\(id)", key: token, form: [("amount", "500000")]), .ok)
            let confirm = try await client.proxy(.post, "/stripe/v1/payment_intents/\(id)/confirm", key: token, form: [("payment_method", "pm_card_visa")])
            expectStatus(confirm, .forbidden)
            XCTAssertEqual(self.code(confirm), "request_cap_exceeded")
            XCTAssertTrue((confirm.json["error"] as? [String: Any])?["message"].map { "\($0)".contains("$5000") } ?? false, confirm.text)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 0, reserved: 0, unknown: 0)) }

            // Created with confirm=true for $1: counted once; confirming it again after an update counts only the rise.
            let paid = try await client.proxy(.post, "/stripe/v1/payment_intents", key: token, form: [("amount", "100"), ("currency", "usd"), ("confirm", "true")])
            expectStatus(paid, .ok)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v.settled, 1_000_000) }
        }
        XCTAssertEqual(h.fake.moved.map(\.amount), [100], "only the $1 confirmed at create moved")
    }

    /// Case 4: endpoints that move money are priced or refused on a capped key — by name, by wildcard, and for a
    /// POST the registry does not know.
    func testRoutesAroundTheCapAreClosed() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            for endpoints in [["POST /v1/subscriptions"], ["POST /v1/**"], ["subscriptions.create"], ["POST /v1/quotes/*/accept"]] {
                let r = try await client.call(.post, "/v1/keys", token: t.admin, json: ["vendor": "stripe", "label": "x",
                                              "allowed_endpoints": endpoints, "max_request_usd": 1] as [String: Any])
                expectStatus(r, .badRequest, "\(endpoints)")
                XCTAssertTrue(r.text.contains("cannot price"), r.text)
            }
            // PATCH that adds a cap to a key that opens an unpriced endpoint: refused too.
            let open = try await client.vaultKey(t, ["allowed_endpoints": ["POST /v1/**", "GET /v1/**"]])
            expectStatus(try await client.call(.patch, "/v1/keys/\(open.id)", token: t.admin, json: ["daily_usd_cap": 5]), .badRequest)

            // Capture on a $1-a-request key: priced from the amount captured.
            let charge = try await client.proxy(.post, "/stripe/v1/charges", key: open.token, form: [("amount", "100"), ("currency", "usd"), ("capture", "false")])
            let chargeId = charge.json["id"] as? String ?? ""
            let capped = try await client.vaultKey(t, ["max_request_usd": 1, "allowed_endpoints": ["POST /v1/charges/*/capture", "POST /v1/brand_new/*",
                                                                                                   "POST /v1/transfers/*/reversals"]])
            let capture = try await client.proxy(.post, "/stripe/v1/charges/\(chargeId)/capture", key: capped.token, form: [("amount", "10000")])
            expectStatus(capture, .forbidden)
            XCTAssertEqual(self.code(capture), "request_cap_exceeded")
            // An unknown POST on a capped key.
            let unknown = try await client.proxy(.post, "/stripe/v1/brand_new/x_1", key: capped.token, form: [("amount", "10000")])
            expectStatus(unknown, .forbidden)
            XCTAssertEqual(self.code(unknown), "endpoint_not_priced")
        }
        XCTAssertTrue(h.fake.requests(path: "/v1/brand_new/x_1").isEmpty)
        XCTAssertTrue(h.fake.requests().filter { $0.path.hasSuffix("/capture") && $0.method == "POST" }.isEmpty)
    }

    /// Case 5: the same body for another connected account is another charge, not a replay of the first.
    func testStripeAccountIsPartOfTheDuplicateFingerprint() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "allowed_stripe_accounts": ["acct_A1", "acct_B2"]])
            for account in ["acct_A1", "acct_B2", "acct_A1"] {
                // New SDK-random key each time: only the fingerprint can tell.
                let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(500, "fee"),
                                               headers: ["Stripe-Account": account, "Idempotency-Key": UUID().uuidString])
                expectStatus(r, .ok)
            }
        }
        XCTAssertEqual(h.fake.moved.map { $0.account ?? "-" }, ["acct_A1", "acct_B2"], "B charged once; A's repeat replayed")
    }

    /// Case 6: a vendor 429 (or 401, 403, 409) is passed through, not stored: the identical next request reaches the
    /// vendor. A final 400 is stored for its Idempotency-Key, as Stripe does.
    func testTransientVendorRefusalsAreNotReplayedButFinalOnesAre() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let mail = try await client.vaultKey(t, ["vendor": "resend", "allowed_endpoints": ["POST /emails"], "daily_usd_cap": 1])
            let email: [String: Any] = ["from": "a@b.co", "to": ["c@d.co"], "subject": "hi", "text": "rate limited"]
            h.fake.faultQueue.withLockedValue { $0 = [.status(429)] }
            do { let r = try await client.proxy(.post, "/resend/emails", key: mail.token, json: email); XCTAssertEqual(r.status.code, 429) }
            expectStatus(try await client.proxy(.post, "/resend/emails", key: mail.token, json: email), .ok)

            let (_, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            h.fake.faultQueue.withLockedValue { $0 = [.status(400)] }
            do { let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(100, "bad"), headers: ["Idempotency-Key": "k400"]); XCTAssertEqual(r.status.code, 400) }
            let again = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(100, "bad"), headers: ["Idempotency-Key": "k400"])
            XCTAssertEqual(again.status.code, 400)
            XCTAssertEqual(again.headers[HTTPField.Name("Idempotent-Replayed")!], "true")
        }
        XCTAssertEqual(h.fake.requests(path: "/emails").count, 2, "the 429 was not replayed")
        XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 1, "the 400 was replayed")
    }

    /// Case 7: Twilio is settled at the price it reports, above the estimate too: the ledger counts what moved, and
    /// the cap refuses the next message once it is reached.
    func testTwilioIsSettledAtItsReportedPriceAboveTheEstimate() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.twilioPrice.withLockedValue { $0 = "-0.50000" }
        let keyId = try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let sms = try await client.vaultKey(t, ["vendor": "twilio", "allowed_endpoints": ["POST /2010-04-01/Accounts/*/Messages.json"], "daily_usd_cap": 1])
            var statuses: [Int] = []
            for i in 0..<4 {
                let r = try await client.proxy(.post, "/twilio/2010-04-01/Accounts/AC1/Messages.json", key: sms.token,
                                               form: [("To", "+15551234567"), ("From", "+15550000000"), ("Body", "message \(i)")], basicAuth: true)
                statuses.append(Int(r.status.code))
            }
            XCTAssertEqual(statuses, [201, 201, 429, 429])
            return sms.id
        }
        do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 1_000_000, reserved: 0, unknown: 0)) }
        XCTAssertEqual(h.fake.moved.map(\.amount).reduce(0, +), 1_000_000, "the ledger equals what moved")
    }

    /// Case 9: a duplicate window shorter than the request does not let an identical parallel request take over the
    /// live record (it waits and gets the replay); a second vault key cannot take over the first key's unknown outcome.
    func testShortWindowsAndOtherKeysCannotTakeOverLiveOrUnknownRecords() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run({ $0.proxy.upstreamTimeout = .seconds(10) }) { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "duplicate_window_seconds": 1, "auto_idempotency": false])
            h.fake.latency.withLockedValue { $0 = .milliseconds(2_500) }
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<2 {
                    group.addTask {
                        if i == 1 { try await Task.sleep(for: .milliseconds(1_300)) }
                        return Int(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(700, "slow")).status.code)
                    }
                }
                var all: [Int] = []
                for try await s in group { all.append(s) }
                return all
            }
            XCTAssertEqual(statuses, [200, 200])
            h.fake.latency.withLockedValue { $0 = .zero }

            let first = try await client.vaultKey(t, ["daily_usd_cap": 100])
            let second = try await client.vaultKey(t, ["daily_usd_cap": 100])
            h.fake.faultQueue.withLockedValue { $0 = [.actThenStatus(502)] }
            do { let r = try await client.proxy(.post, "/stripe/v1/charges", key: first.token, form: self.charge(5_000, "shared"), headers: ["Idempotency-Key": "kk"]); XCTAssertEqual(r.status.code, 502) }
            let other = try await client.proxy(.post, "/stripe/v1/charges", key: second.token, form: self.charge(5_000, "shared"), headers: ["Idempotency-Key": "kk"])
            expectStatus(other, .conflict)
            XCTAssertEqual(self.code(other), "outcome_unknown")
            do { let v = try await Ledger.day(second.id); XCTAssertEqual(v, .init(settled: 0, reserved: 0, unknown: 0)) }
            do { let v = try await Ledger.day(first.id); XCTAssertEqual(v.unknown, 50_000_000, "still the first key's") }
            // The first key's own retry still resumes it.
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: first.token, form: self.charge(5_000, "shared"), headers: ["Idempotency-Key": "kk"]), .ok)
            do { let v = try await Ledger.day(first.id); XCTAssertEqual(v, .init(settled: 50_000_000, reserved: 0, unknown: 0)) }
        }
        XCTAssertEqual(h.fake.moved.map(\.amount), [700, 5_000], "each operation moved once")
    }

    /// Case 9: a retry that takes over an unknown outcome and is then denied (here by the free plan's quota) hands it
    /// back: the next retry still finds it, with its upstream key, and settles it once.
    func testADeniedRetryKeepsTheUnknownRecordAndItsKey() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run({ $0.proxy.freeMonthlyRequests = 1 }) { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "auto_idempotency": false])
            h.fake.faultQueue.withLockedValue { $0 = [.actThenStatus(502)] }
            do { let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(2_000, "q")); XCTAssertEqual(r.status.code, 502) }
            let denied = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(2_000, "q"))
            expectStatus(denied, .tooManyRequests)
            XCTAssertEqual(self.code(denied), "monthly_quota_exceeded")
            expectStatus(try await client.call(.post, "/v1/operator/tenants/\(t.id)/plan", token: "operator-secret-for-tests", json: ["plan": "pro"]), .ok)
            try await Task.sleep(for: .milliseconds(2_100))   // the pipeline caches plans for 2 s
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(2_000, "q")), .ok)
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 20_000_000, reserved: 0, unknown: 0)) }
        }
        XCTAssertEqual(h.fake.moved.map(\.amount), [2_000])
        let keys = h.fake.requests(path: "/v1/charges").map { $0.headers["idempotency-key"] ?? "none" }
        XCTAssertEqual(Set(keys).count, 1, "the settling retry used the first attempt's key: \(keys)")
    }

    /// A request that can move money has its audit row before it is forwarded (written with its reservation, marked
    /// `in_flight`), so a crash while it is upstream never leaves money without a trail; the settle completes the same
    /// row (one row per request).
    func testAPricedRequestHasItsAuditRowBeforeItIsForwarded() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.latency.withLockedValue { $0 = .milliseconds(1_500) }
        try await h.run({ $0.proxy.upstreamTimeout = .seconds(5) }) { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            async let charged = client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(1_200, "trail"))
            var whileUpstream: [Ledger.AuditRow] = []
            for _ in 0..<100 where h.fake.requests(path: "/v1/charges").isEmpty { try await Task.sleep(for: .milliseconds(20)) }
            whileUpstream = try await Ledger.auditNow(keyId)
            let response = try await charged
            expectStatus(response, .ok)
            XCTAssertEqual(whileUpstream.map { "\($0.decision) \($0.errorCode ?? "-") \($0.state ?? "-") \($0.outcome ?? "-") \($0.amount)" },
                           ["allowed - in_flight - 12000000"], "the row exists while the vendor holds the request")
            let after = try await Ledger.audit(keyId)
            XCTAssertEqual(after.map { "\($0.decision) \($0.errorCode ?? "-") \($0.state ?? "-") \($0.outcome ?? "-") \($0.amount) \($0.upstreamStatus ?? 0)" },
                           ["allowed - - settled 12000000 200"], "the settle completed the same row")
        }
    }

    /// The settle statement is retried when it fails (here: the first attempt is refused by a trigger, as a dropped
    /// connection or a failover would refuse it): the agent gets its answer and the money is settled, not left held.
    func testAFailedSettleIsRetried() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await TestDatabase.migrate()
        try await TestDatabase.withClient { db in
            try await db.query("CREATE SEQUENCE IF NOT EXISTS test_settle_failures")
            try await db.query("SELECT setval('test_settle_failures', 1, false)")
            try await db.query("""
                CREATE OR REPLACE FUNCTION test_fail_first_settle() RETURNS trigger LANGUAGE plpgsql AS $fn$
                BEGIN
                    IF NEW.key_label = 'settle-fails-once' AND OLD.state = 'in_flight' AND nextval('test_settle_failures') = 1 THEN
                        RAISE EXCEPTION 'injected settle failure';
                    END IF;
                    RETURN NEW;
                END $fn$
                """)
            try await db.query("DROP TRIGGER IF EXISTS test_fail_first_settle ON audit_events")
            try await db.query("CREATE TRIGGER test_fail_first_settle BEFORE UPDATE ON audit_events FOR EACH ROW EXECUTE FUNCTION test_fail_first_settle()")
        }
        do {
            let keyId = try await h.run { client in
                let t = try await client.tenantWithCredentials()
                let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "label": "settle-fails-once"])
                expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(1_000, "retry-settle")), .ok)
                return keyId
            }
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 10_000_000, reserved: 0, unknown: 0)) }
            let rows = try await Ledger.audit(keyId)
            XCTAssertEqual(rows.map { "\($0.outcome ?? "-") \($0.errorCode ?? "-")" }, ["settled -"])
            XCTAssertTrue(h.logs.text.contains("could not record settlement and audit"), "the first settle did fail")
        }
        try await TestDatabase.withClient { db in try await db.query("DROP TRIGGER IF EXISTS test_fail_first_settle ON audit_events") }
    }

    /// A settle slower than the database deadline (here a trigger sleeps 1.5 s in it, as a stranded statement or a
    /// wait for a pool connection would): the agent gets the vendor's answer at the deadline, the amount stays counted,
    /// and the settle still lands afterwards. Without the deadline the agent waited the 1.5 s.
    func testASlowSettleAnswersTheAgentAtTheDeadlineAndLandsLater() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await TestDatabase.migrate()
        try await TestDatabase.withClient { db in
            try await db.query("""
                CREATE OR REPLACE FUNCTION test_slow_settle() RETURNS trigger LANGUAGE plpgsql AS $fn$
                BEGIN
                    IF NEW.key_label = 'settle-is-slow' AND OLD.state = 'in_flight' THEN PERFORM pg_sleep(1.5); END IF;
                    RETURN NEW;
                END $fn$
                """)
            try await db.query("DROP TRIGGER IF EXISTS test_slow_settle ON audit_events")
            try await db.query("CREATE TRIGGER test_slow_settle BEFORE UPDATE ON audit_events FOR EACH ROW EXECUTE FUNCTION test_slow_settle()")
        }
        do {
            let keyId = try await h.run({ $0.proxy.databaseDeadline = .milliseconds(400) }) { client in
                let t = try await client.tenantWithCredentials()
                let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "label": "settle-is-slow"])
                let sent = ContinuousClock.now
                expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: self.charge(1_000, "slow-settle")), .ok)
                let took = ContinuousClock.now - sent
                XCTAssertLessThan(took, .milliseconds(1_300), "answered at the deadline, not after the 1.5 s settle")
                do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 0, reserved: 10_000_000, unknown: 0), "counted meanwhile") }
                return keyId
            }
            for _ in 0..<40 where try await Ledger.day(keyId).settled == 0 { try await Task.sleep(for: .milliseconds(100)) }
            do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 10_000_000, reserved: 0, unknown: 0), "the settle landed") }
            let rows = try await Ledger.audit(keyId)
            XCTAssertEqual(rows.map { "\($0.outcome ?? "-") \($0.state ?? "-")" }, ["settled -"])
            XCTAssertTrue(h.logs.text.contains("not recorded within the database deadline"))
        }
        try await TestDatabase.withClient { db in try await db.query("DROP TRIGGER IF EXISTS test_slow_settle ON audit_events") }
    }
}
