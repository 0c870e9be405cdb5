import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import XCTest

/// Issue 20's numbered cases: the proxy reads each request the way the vendor will and forwards only what it read,
/// and no vendor credential reaches an agent. Each case is sent as raw HTTP (an agent writes whatever a prompt asks).
final class ProxyReadingTests: XCTestCase, @unchecked Sendable {
    func code(_ r: HTTPResult) -> String? { r.headers[HTTPField.Name("Keybrake-Error-Code")!] }

    /// A $1-a-request Stripe key that allows PaymentIntents, charges, subscription cancels and reads.
    nonisolated(unsafe) static let oneDollarKey: [String: Any] = [
        "max_request_usd": 1, "daily_usd_cap": 100,
        "allowed_endpoints": ["POST /v1/payment_intents", "POST /v1/charges", "DELETE /v1/subscriptions/*",
                              "DELETE /v1/subscription_items/*", "GET /v1/**", "POST /v1/customers"],
    ]

    // MARK: 1. Parameters outside the form body

    func testAQueryStringOnAPostIsRefusedSoAConfirmInItCannotCharge() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, Self.oneDollarKey)
            let r = try await client.raw(.post, "/stripe/v1/payment_intents?confirm=true", key: token,
                                         contentType: "application/x-www-form-urlencoded", body: "amount=10000&currency=usd")
            expectStatus(r, .badRequest)
            XCTAssertEqual(self.code(r), "invalid_request")
            XCTAssertTrue((r.json["error"] as? [String: Any])?["message"].map { "\($0)".contains("query string") } ?? false, r.text)
            // The same parameters in the body are read, priced at $100 and refused by the $1 limit.
            let inBody = try await client.raw(.post, "/stripe/v1/payment_intents", key: token,
                                              contentType: "application/x-www-form-urlencoded", body: "amount=10000&currency=usd&confirm=true")
            XCTAssertEqual(self.code(inBody), "request_cap_exceeded", inBody.text)
        }
        XCTAssertTrue(h.fake.moved.isEmpty, "nothing moved")
        XCTAssertTrue(h.fake.requests().isEmpty, "nothing reached the vendor")
    }

    func testAMultipartBodyIsRefusedSoItsFieldsCannotCharge() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, Self.oneDollarKey)
            let boundary = "XyZ"
            let body = ["amount": "10000", "currency": "usd", "confirm": "true"].map {
                "--\(boundary)\r\nContent-Disposition: form-data; name=\"\($0.key)\"\r\n\r\n\($0.value)\r\n"
            }.joined() + "--\(boundary)--\r\n"
            let r = try await client.raw(.post, "/stripe/v1/payment_intents", key: token,
                                         contentType: "multipart/form-data; boundary=\(boundary)", body: body)
            expectStatus(r, .badRequest)
            XCTAssertEqual(self.code(r), "invalid_request")
            let audit = try await Ledger.audit(keyId)
            XCTAssertEqual(audit.last?.errorCode, "invalid_request", "the refusal is audited")
        }
        XCTAssertTrue(h.fake.requests().isEmpty)
    }

    /// Every other place a parameter could hide: each refused (400) or read exactly as the vendor reads it.
    func testAmbiguousFormsAreRefusedAndEncodedNamesArePricedAsTheVendorReadsThem() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, Self.oneDollarKey)
            let form = "application/x-www-form-urlencoded"
            let refused: [(String, String?, String, [String: String])] = [
                ("amount=50&currency=usd&amount=10000", form, "a repeated name (the vendor takes the last)", [:]),
                ("amount=50&currency=usd&[amount]=10000", form, "a bracketed name the vendor reads as amount", [:]),
                ("amount=50&currency=usd&amount]=10000", form, "a stray bracket", [:]),
                ("amount=50&currency=usd;amount=10000", form, "a `;` older Rack splits on", [:]),
                ("amount=50&currency=usd&description=%zz", form, "a malformed escape", [:]),
                ("amount=10000&currency=usd", nil, "a body without Content-Type (Rack reads it as a form)", [:]),
                ("amount=10000&currency=usd", "text/plain", "a body type Keybrake does not read", [:]),
                ("amount=50&currency=usd", form, "a compressed body", ["Content-Encoding": "gzip"]),
                ("amount=50&currency=usd", form, "two Stripe-Account headers", ["Stripe-Account": "acct_1"]),
            ]
            for (body, type, why, headers) in refused {
                var extra = headers
                if why == "two Stripe-Account headers" { extra = [:] }
                let r = try await client.raw(.post, "/stripe/v1/charges", key: token, contentType: type, body: body, headers: extra,
                                             repeatedHeader: why == "two Stripe-Account headers" ? ("Stripe-Account", ["acct_1", "acct_2"]) : nil)
                XCTAssertEqual(r.status, .badRequest, "\(why): \(r.text)")
                XCTAssertEqual(self.code(r), "invalid_request", why)
            }
            // A percent-encoded name is decoded as the vendor decodes it: `amoun%74` is `amount`, priced at $100.
            let encoded = try await client.raw(.post, "/stripe/v1/charges", key: token, contentType: form, body: "amoun%74=10000&currency=usd")
            XCTAssertEqual(self.code(encoded), "request_cap_exceeded", encoded.text)
            // Lists (`expand[]`) may repeat; the SDK's own encoding (`metadata%5Border%5D`) passes.
            let fine = try await client.raw(.post, "/stripe/v1/charges", key: token, contentType: form,
                                            body: "amount=50&currency=usd&expand[]=customer&expand[]=balance_transaction&metadata%5Border%5D=o%201")
            expectStatus(fine, .ok)
        }
        XCTAssertEqual(h.fake.moved.map(\.amount), [50], "only the $0.50 charge moved")
        XCTAssertEqual(h.fake.requests().count, 1)
    }

    // MARK: 2. DELETE routes that move money

    func testCancellingASubscriptionWithInvoiceNowIsRefusedOnACappedKey() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, Self.oneDollarKey)
            for uri in ["/stripe/v1/subscriptions/sub_1?invoice_now=true", "/stripe/v1/subscriptions/sub_1?invoice_now=TRUE&prorate=true",
                        "/stripe/v1/subscription_items/si_1?proration_behavior=always_invoice"] {
                let r = try await client.raw(.delete, uri, key: token)
                expectStatus(r, .forbidden, uri)
                XCTAssertEqual(self.code(r), "endpoint_not_priced", uri)
            }
            // A body on a DELETE is not forwarded (stripe-python sends a DELETE's parameters in the query).
            let bodied = try await client.raw(.delete, "/stripe/v1/subscriptions/sub_1", key: token,
                                              contentType: "application/x-www-form-urlencoded", body: "invoice_now=true")
            expectStatus(bodied, .badRequest)
            expectStatus(try await client.raw(.delete, "/stripe/v1/subscriptions/sub_1?invoice_now=false", key: token), .ok)
            expectStatus(try await client.raw(.delete, "/stripe/v1/subscription_items/si_1?proration_behavior=none", key: token), .ok)
            // An uncapped key may: nothing to overspend.
            let (_, open) = try await client.vaultKey(t, ["allowed_endpoints": ["DELETE /v1/subscriptions/*"]])
            expectStatus(try await client.raw(.delete, "/stripe/v1/subscriptions/sub_2?invoice_now=true", key: open), .ok)
            // An unknown DELETE is treated as moving money Keybrake cannot price, on a capped key.
            let (_, wide) = try await client.vaultKey(t, ["daily_usd_cap": 10, "allowed_endpoints": ["DELETE /v1/brand_new/**"]])
            let unknown = try await client.raw(.delete, "/stripe/v1/brand_new/x1", key: wide)
            XCTAssertEqual(self.code(unknown), "endpoint_not_priced", unknown.text)
        }
        let deletes = h.fake.requests(method: "DELETE").map { "\($0.path)?\($0.query ?? "")" }
        XCTAssertEqual(deletes, ["/v1/subscriptions/sub_1?invoice_now=false", "/v1/subscription_items/si_1?proration_behavior=none",
                                 "/v1/subscriptions/sub_2?invoice_now=true"])
    }

    // MARK: 3. Stripe-Context

    func testStripeContextIsCheckedAgainstAllowedAccountsLikeStripeAccount() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "allowed_stripe_accounts": ["acct_A1"]])
            let form: [(String, String)] = [("amount", "100"), ("currency", "usd")]
            for context in ["acct_Other", "acct_A1/acct_Other", "acct_Other/acct_A1", ""] {
                let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: form, headers: ["Stripe-Context": context])
                expectStatus(r, .forbidden, context)
                XCTAssertEqual(self.code(r), "stripe_account_not_allowed", context)
            }
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: form, headers: ["Stripe-Context": "acct_A1"]), .ok)
            // The account is part of the audit row, allowed or not; and of the API's and CSV's view of it.
            let audit = try await client.call(.get, "/v1/audit?limit=10", token: t.admin)
            let accounts = (audit.json["data"] as? [[String: Any]] ?? []).map { $0["vendor_account"] as? String ?? "-" }
            XCTAssertEqual(accounts, ["acct_A1", "-", "acct_Other/acct_A1", "acct_A1/acct_Other", "acct_Other"], audit.text)
        }
        XCTAssertEqual(h.fake.requests().map { $0.headers["stripe-context"] }, ["acct_A1"], "only the allowed context went upstream")
    }

    // MARK: 4. Credential endpoints

    func testEndpointsThatHandOutCredentialsAreRefusedForEveryKey() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let sid = ProxyHarness.twilioSid
            // Broad grants are accepted; the credential endpoints under them are refused at request time.
            let (_, twilioCapped) = try await client.vaultKey(t, ["vendor": "twilio", "daily_usd_cap": 5, "allowed_endpoints": ["GET /2010-04-01/**"]])
            let (_, twilioOpen) = try await client.vaultKey(t, ["vendor": "twilio", "allowed_endpoints": ["* /2010-04-01/**"]])
            for token in [twilioCapped, twilioOpen] {
                for (method, path) in [(HTTPRequest.Method.get, "/twilio/2010-04-01/Accounts/\(sid).json"), (.get, "/twilio/2010-04-01/Accounts.json"),
                                       (.get, "/twilio/2010-04-01/Accounts/ACany/Keys.json"), (.get, "/twilio/2010-04-01/Accounts/ACany/SigningKeys/SK1.json")] {
                    let r = try await client.proxy(method, path, key: token, basicAuth: true)
                    XCTAssertEqual(r.status, .forbidden, path)
                    XCTAssertEqual(self.code(r), "endpoint_not_allowed", path)
                    XCTAssertTrue(r.text.contains("never forwarded"), r.text)
                }
            }
            for (method, path) in [(HTTPRequest.Method.post, "/twilio/2010-04-01/Accounts.json"), (.post, "/twilio/2010-04-01/Accounts/AC1/Keys.json")] {
                expectStatus(try await client.proxy(method, path, key: twilioOpen, form: [("FriendlyName", "x")], basicAuth: true), .forbidden, path)
            }
            let (_, resendOpen) = try await client.vaultKey(t, ["vendor": "resend", "allowed_endpoints": ["* /**"]])
            let apiKey = try await client.proxy(.post, "/resend/api-keys", key: resendOpen, json: ["name": "mine"])
            expectStatus(apiKey, .forbidden)
            XCTAssertEqual(apiKey.json["name"] as? String, "endpoint_not_allowed", "Resend envelope")
            let (_, stripeOpen) = try await client.vaultKey(t, ["allowed_endpoints": ["* /v1/**"]])
            let hook = try await client.proxy(.post, "/stripe/v1/webhook_endpoints", key: stripeOpen, form: [("url", "https://evil.example/x"), ("enabled_events[]", "*")])
            expectStatus(hook, .forbidden)
            // Naming one when the key is created is refused at once (400 naming the endpoint), capped or not.
            for (vendor, endpoint) in [("twilio", "GET /2010-04-01/Accounts/AC123.json"), ("twilio", "* /2010-04-01/Accounts/*"), ("resend", "POST /api-keys"), ("stripe", "POST /v1/webhook_endpoints"),
                                       ("stripe", "* /v1/webhook_endpoints/*"), ("twilio", "POST /2010-04-01/Accounts/*/SigningKeys.json"), ("twilio", "DELETE /2010-04-01/Accounts/AC1/Keys/SK1.json")] {
                let r = try await client.call(.post, "/v1/keys", token: t.admin, json: ["vendor": vendor, "label": "x", "allowed_endpoints": [endpoint]])
                expectStatus(r, .badRequest, endpoint)
                XCTAssertTrue(r.text.contains("never forwards"), r.text)
            }
        }
        XCTAssertTrue(h.fake.requests().isEmpty, "no credential endpoint reached the vendor")
    }

    /// The second layer: an answer that carries the tenant's secret or a known secret field is masked.
    func testSecretsInAnswersAreMaskedStreamedOrRead() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.leakedFields.withLockedValue {
            $0 = ["auth_token": "subaccount-token-abcdef0123456789", "note": "key=\(ProxyHarness.twilioToken)", "secret": "whsec_leaked_12345678"]
        }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["vendor": "twilio", "allowed_endpoints": ["GET /2010-04-01/**", "POST /2010-04-01/Accounts/*/Messages.json"]])
            let read = try await client.proxy(.get, "/twilio/2010-04-01/Accounts/AC1/Messages/SM1.json", key: token, basicAuth: true)
            let sent = try await client.proxy(.post, "/twilio/2010-04-01/Accounts/AC1/Messages.json", key: token,
                                              form: [("To", "+15551234567"), ("From", "+15550000000"), ("Body", "hi")], basicAuth: true)
            for r in [read, sent] {
                XCTAssertTrue(r.status.code < 300, r.text)
                XCTAssertFalse(r.text.contains(ProxyHarness.twilioToken), "the tenant's auth token: \(r.text)")
                XCTAssertFalse(r.text.contains("subaccount-token"), "a secret field: \(r.text)")
                XCTAssertFalse(r.text.contains("whsec_leaked"), r.text)
                XCTAssertNotNil(r.json["sid"], "the rest of the answer is intact")
            }
        }
    }

    // MARK: 7. Headers by allowlist

    func testOnlyTheHeadersTheVendorsSDKsSendGoUpstream() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["allowed_endpoints": ["GET /v1/**"]])
            let r = try await client.proxy(.get, "/stripe/v1/customers?limit=3", key: token, headers: [
                "Stripe-Version": "2024-06-20", "X-Stripe-Client-User-Agent": "{}", "X-Custom-Thing": "1", "Connection": "X-Named-Hop",
                "X-Named-Hop": "2", "X-Keybrake-Run-Id": "run1", "Cookie": "a=b", "Forwarded": "for=1.2.3.4",
            ])
            XCTAssertEqual(r.status.code, 404, "forwarded: the fake knows no customers list")
        }
        let got = try XCTUnwrap(h.fake.requests().first)
        XCTAssertEqual(got.query, "limit=3")
        XCTAssertEqual(got.headers["stripe-version"], "2024-06-20")
        XCTAssertNotNil(got.headers["x-stripe-client-user-agent"])
        for name in ["x-custom-thing", "x-named-hop", "x-keybrake-run-id", "cookie", "forwarded", "idempotency-key"] {
            XCTAssertNil(got.headers[name], "\(name) must not go upstream")
        }
        XCTAssertEqual(got.headers["authorization"], "Bearer \(ProxyHarness.stripeSecret)")
    }
}

extension TestClientProtocol {
    /// A proxied request with the body, Content-Type and headers exactly as given (bearer vault key).
    func raw(_ method: HTTPRequest.Method, _ uri: String, key: String, contentType: String? = nil, body: String? = nil,
             headers extra: [String: String] = [:], repeatedHeader: (String, [String])? = nil) async throws -> HTTPResult {
        var headers: HTTPFields = [.authorization: "Bearer \(key)"]
        if let contentType { headers[.contentType] = contentType }
        for (k, v) in extra { headers[HTTPField.Name(k)!] = v }
        if let (name, values) = repeatedHeader { for v in values { headers.append(HTTPField(name: HTTPField.Name(name)!, value: v)) } }
        let response = try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
        return HTTPResult(status: response.status, headers: response.headers, body: Data(buffer: response.body))
    }
}
