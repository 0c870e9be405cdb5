import Foundation
import HTTPTypes
import HummingbirdTesting
import XCTest

final class ProxyPolicyTests: XCTestCase {
    func testAllowedChargeIsForwardedWithTheRealSecretAndAudited() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        let (tenant, keyId, token) = try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            let r = try await client.proxy(.post, "/stripe/v1/charges", key: token,
                                           form: [("amount", "1250"), ("currency", "usd"), ("source", "tok_x")],
                                           headers: ["X-Keybrake-Run-Id": "run-42"])
            expectStatus(r, .ok)
            XCTAssertTrue((r.json["id"] as? String ?? "").hasPrefix("ch_"))
            XCTAssertNotNil(r.headers[HTTPField.Name("Keybrake-Request-Id")!])
            XCTAssertNotNil(r.headers[HTTPField.Name("Keybrake-Idempotency-Key")!], "an auto key is generated when the agent sends none")
            XCTAssertFalse(r.text.contains(ProxyHarness.stripeSecret))
            return (t, keyId, token)
        }
        let sent = try XCTUnwrap(h.fake.requests(path: "/v1/charges").first)
        XCTAssertEqual(sent.headers["authorization"], "Bearer \(ProxyHarness.stripeSecret)", "real secret injected")
        XCTAssertFalse(sent.headers.values.contains { $0.contains(token) }, "vault key never reaches the vendor")
        XCTAssertNil(sent.headers["x-keybrake-run-id"])
        XCTAssertTrue(sent.headers["idempotency-key"]?.hasPrefix("kb_") ?? false)
        XCTAssertEqual(sent.form["amount"], "1250")

        let audit = try await Ledger.audit(keyId)
        XCTAssertEqual(audit.count, 1)
        XCTAssertEqual(audit.first?.decision, "allowed")
        XCTAssertEqual(audit.first?.outcome, "settled")
        XCTAssertEqual(audit.first?.amount, 12_500_000)
        XCTAssertEqual(audit.first?.upstreamStatus, 200)
        do { let v = try await Ledger.day(keyId); XCTAssertEqual(v, .init(settled: 12_500_000, reserved: 0, unknown: 0)) }
        let auditText = try await Ledger.auditText(tenant: tenant.id)
        XCTAssertTrue(auditText.contains("run-42"))
        for secret in [ProxyHarness.stripeSecret, token, String(token.suffix(43))] {
            XCTAssertFalse(auditText.contains(secret), "secret in audit")
            XCTAssertFalse(h.logs.text.contains(secret), "secret in logs")
        }
    }

    func testAllowlistRefusesOtherEndpointsAndPathTricks() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        let keyId = try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            let refund = try await client.proxy(.post, "/stripe/v1/refunds", key: token, form: [("charge", "ch_1"), ("amount", "100")])
            expectStatus(refund, .forbidden)
            let err = refund.json["error"] as? [String: Any]
            XCTAssertEqual(err?["code"] as? String, "endpoint_not_allowed")
            XCTAssertEqual(err?["type"] as? String, "invalid_request_error")
            XCTAssertTrue((err?["message"] as? String ?? "").contains("refunds.create"), refund.text)
            XCTAssertEqual(refund.headers[HTTPField.Name("Stripe-Should-Retry")!], "false")
            for trick in ["/stripe/v1/charges/../refunds", "/stripe/v1/charges/%2e%2e/refunds", "/stripe/v1/charges%2F..%2Frefunds",
                          "/stripe/v1//charges", "/stripe/V1/Charges", "/stripe/v1/charges/", "/stripe/v1/Charges"] {
                let r = try await client.proxy(.post, trick, key: token, form: [("amount", "100"), ("currency", "usd")])
                expectStatus(r, .forbidden, trick)
                XCTAssertEqual((r.json["error"] as? [String: Any])?["code"] as? String, "endpoint_not_allowed", trick)
            }
            let wrongVendor = try await client.proxy(.post, "/resend/emails", key: token, json: ["to": "a@b.co"])
            expectStatus(wrongVendor, .forbidden)
            XCTAssertEqual(wrongVendor.json["name"] as? String, "vendor_not_allowed", "Resend envelope")
            let account = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "100"), ("currency", "usd")],
                                                 headers: ["Stripe-Account": "acct_1Other"])
            XCTAssertEqual((account.json["error"] as? [String: Any])?["code"] as? String, "stripe_account_not_allowed")
            return keyId
        }
        XCTAssertEqual(h.fake.received.withLockedValue { $0.count }, 0, "nothing denied reached the vendor")
        let audit = try await Ledger.audit(keyId)
        XCTAssertEqual(audit.count, 10, "every denial is audited")
        XCTAssertTrue(audit.allSatisfy { $0.decision == "denied" && $0.amount == 0 })
    }

    func testInvalidRevokedAndExpiredKeys() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        let keyId = try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "allowed_endpoints": ["POST /v1/charges", "GET /v1/charges/*"]])
            let none = try await client.execute(uri: "/stripe/v1/charges/ch_1", method: .get)
            XCTAssertEqual(none.status, .unauthorized)
            var chars = Array(token); chars[chars.count - 1] = chars.last == "a" ? "b" : "a"
            let forged = try await client.proxy(.get, "/stripe/v1/charges/ch_1", key: String(chars))
            expectStatus(forged, .unauthorized)
            XCTAssertEqual((forged.json["error"] as? [String: Any])?["code"] as? String, "vault_key_invalid")

            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "500"), ("currency", "usd")]), .ok)
            expectStatus(try await client.call(.post, "/v1/keys/\(keyId)/revoke", token: t.admin), .ok)
            let revoked = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "500"), ("currency", "usd")])
            expectStatus(revoked, .unauthorized)
            XCTAssertEqual((revoked.json["error"] as? [String: Any])?["code"] as? String, "vault_key_revoked")

            let (_, other) = try await client.vaultKey(t, ["expires_at": "2099-01-01T00:00:00Z"])
            let otherId = "key_" + other.dropFirst("kb_vault_".count).prefix(16)
            try await TestDatabase.withClient { db in
                try await db.query("UPDATE vault_keys SET expires_at = now() - interval '1 second' WHERE id = \(String(otherId))")
            }
            let expired = try await client.proxy(.post, "/stripe/v1/charges", key: other, form: [("amount", "500"), ("currency", "usd")])
            XCTAssertEqual((expired.json["error"] as? [String: Any])?["code"] as? String, "vault_key_expired")
            return keyId
        }
        XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 1)
        let audit = try await Ledger.audit(keyId)
        // The forged token (the key's id, a wrong secret) has no row of its own: one summary row (DESIGN §4).
        XCTAssertEqual(audit.filter { $0.errorCode == "unverified_attempts" }.count, 1)
        let own = audit.filter { $0.errorCode != "unverified_attempts" }
        XCTAssertEqual(own.map(\.decision), ["allowed", "denied"])
        XCTAssertEqual(own.last?.errorCode, "vault_key_revoked")
    }

    func testPolicyEditAppliesToTheNextRequest() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "3000"), ("currency", "usd")]), .ok)
            expectStatus(try await client.call(.patch, "/v1/keys/\(keyId)", token: t.admin, json: ["daily_usd_cap": 50]), .ok)
            let over = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "2500"), ("currency", "usd")])
            expectStatus(over, .tooManyRequests)
            let err = over.json["error"] as? [String: Any]
            XCTAssertEqual(err?["code"] as? String, "daily_usd_cap_exceeded")
            XCTAssertEqual(err?["type"] as? String, "rate_limit_error")
            let message = err?["message"] as? String ?? ""
            XCTAssertTrue(message.contains("$50.00") && message.contains("$30.00") && message.contains("$25.00"), message)
            XCTAssertNotNil(over.headers[.retryAfter])
            XCTAssertEqual(over.headers[HTTPField.Name("Stripe-Should-Retry")!], "false")
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "2000"), ("currency", "usd")]), .ok)

            expectStatus(try await client.call(.patch, "/v1/keys/\(keyId)", token: t.admin, json: ["max_request_usd": 5]), .ok)
            let tooBig = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "600"), ("currency", "usd")])
            expectStatus(tooBig, .forbidden)
            XCTAssertEqual((tooBig.json["error"] as? [String: Any])?["code"] as? String, "request_cap_exceeded")
            do { let v = try await Ledger.day(keyId).settled; XCTAssertEqual(v, 50_000_000) }
        }
    }

    func testCurrencyConversionAndFailClosedOnUnknownCurrency() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run({ $0.proxy.fx = try! .init(parsing: "jpy=0.0065,kwd=3.25") }) { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 1000])
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "10000"), ("currency", "jpy")]), .ok)
            do { let v = try await Ledger.day(keyId).settled; XCTAssertEqual(v, 65_000_000, "¥10,000 (zero-decimal) at 0.0065 = $65") }
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1000"), ("currency", "kwd")]), .ok)
            do { let v = try await Ledger.day(keyId).settled; XCTAssertEqual(v, 65_000_000 + 3_250_000, "1.000 KWD (three-decimal) = $3.25") }
            let unknown = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "100"), ("currency", "xyz")])
            expectStatus(unknown, .badRequest)
            XCTAssertEqual((unknown.json["error"] as? [String: Any])?["code"] as? String, "currency_not_supported")
            let missing = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("currency", "usd")])
            XCTAssertEqual((missing.json["error"] as? [String: Any])?["code"] as? String, "amount_required")
        }
        XCTAssertEqual(h.fake.requests(path: "/v1/charges").count, 2)
    }

    func testFreeTierQuotaCountsOnlyAllowedRequests() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["allowed_endpoints": ["GET /v1/customers/*"]])
            // 998 requests already made this month.
            try await TestDatabase.withClient { db in
                try await db.query("""
                    INSERT INTO tenant_monthly_usage (tenant_id, month, requests) VALUES (\(t.id), date_trunc('month', now() AT TIME ZONE 'UTC')::date, 998)
                    """)
            }
            expectStatus(try await client.proxy(.get, "/stripe/v1/customers/cus_1", key: token), .notFound)  // #999 (the fake has no such customer)
            let denied = try await client.proxy(.get, "/stripe/v1/charges/ch_1", key: token)
            expectStatus(denied, .forbidden, "a denial does not count")
            expectStatus(try await client.proxy(.get, "/stripe/v1/customers/cus_2", key: token), .notFound)  // #1000
            let over = try await client.proxy(.get, "/stripe/v1/customers/cus_3", key: token)                 // #1001
            expectStatus(over, .tooManyRequests)
            XCTAssertEqual((over.json["error"] as? [String: Any])?["code"] as? String, "monthly_quota_exceeded")
            XCTAssertNotNil(over.headers[.retryAfter])
            let usage = try await client.call(.get, "/v1/tenant", token: t.admin)
            XCTAssertEqual((usage.json["usage"] as? [String: Any])?["requests"] as? Int, 1000)
            // The operator moves the tenant to pro: the quota is lifted once this replica's memory of it (a used-up
            // quota, a plan: 2 s each) has run out.
            expectStatus(try await client.call(.post, "/v1/operator/tenants/\(t.id)/plan", token: "operator-secret-for-tests", json: ["plan": "pro"]), .ok)
            try await Task.sleep(for: .milliseconds(2_100))
            expectStatus(try await client.proxy(.get, "/stripe/v1/customers/cus_4", key: token), .notFound)
        }
        XCTAssertEqual(h.fake.requests(path: nil, method: "GET").count, 3)
    }

    func testTwilioAndResendCredentialsAndPricing() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (smsKey, smsToken) = try await client.vaultKey(t, ["vendor": "twilio", "allowed_endpoints": ["POST /2010-04-01/Accounts/*/Messages.json"], "daily_usd_cap": 1])
            let sms = try await client.proxy(.post, "/twilio/2010-04-01/Accounts/ACsdkplaceholder/Messages.json", key: smsToken,
                                             form: [("To", "+15550001111"), ("From", "+15550002222"), ("Body", "hello")], basicAuth: true)
            expectStatus(sms, .created)
            XCTAssertEqual(sms.json["account_sid"] as? String, ProxyHarness.twilioSid, "the tenant's real SID replaces the SDK's")
            do { let v = try await Ledger.day(smsKey).settled; XCTAssertEqual(v, 8_300 + 3_000, "one GSM segment, estimated (Twilio reports price later)") }

            let (mailKey, mailToken) = try await client.vaultKey(t, ["vendor": "resend", "allowed_endpoints": ["POST /emails", "POST /emails/batch"], "daily_usd_cap": 1])
            expectStatus(try await client.proxy(.post, "/resend/emails", key: mailToken, json: ["from": "a@b.co", "to": ["c@d.co"], "subject": "s", "html": "x"]), .ok)
            let batch = [["from": "a@b.co", "to": ["1@d.co"], "subject": "1"], ["from": "a@b.co", "to": ["2@d.co"], "subject": "2"], ["from": "a@b.co", "to": ["3@d.co"], "subject": "3"]]
            expectStatus(try await client.proxy(.post, "/resend/emails/batch", key: mailToken, json: batch), .ok)
            do { let v = try await Ledger.day(mailKey).settled; XCTAssertEqual(v, 4 * 900) }
        }
        let sms = try XCTUnwrap(h.fake.requests(method: "POST").first { $0.path.contains("Messages.json") })
        XCTAssertEqual(sms.path, "/2010-04-01/Accounts/\(ProxyHarness.twilioSid)/Messages.json")
        XCTAssertEqual(sms.headers["authorization"], "Basic " + Data("\(ProxyHarness.twilioSid):\(ProxyHarness.twilioToken)".utf8).base64EncodedString())
        let mail = try XCTUnwrap(h.fake.requests(path: "/emails").first)
        XCTAssertEqual(mail.headers["authorization"], "Bearer \(ProxyHarness.resendKey)")
        for secret in [ProxyHarness.twilioToken, ProxyHarness.resendKey] { XCTAssertFalse(h.logs.text.contains(secret)) }
    }
}
