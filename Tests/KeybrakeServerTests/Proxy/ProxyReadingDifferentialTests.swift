import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import XCTest

/// The reading rules as a property (issue 20): a seeded generator places each request's money-bearing parameters in
/// random places and shapes — form body, query string, multipart, repeated names, percent-encoded and bracketed
/// names, `;` separators, untyped or compressed bodies, JSON with duplicate keys, account headers — on random routes
/// of the registries, against `ReadingVendors`, which reads them as the vendors do. After every request:
/// - what the vendor moved for it ≤ what the key allows one request ($1): Keybrake priced what the vendor acted on;
/// - no credential-shaped value reached the agent (the tenant's secrets, a webhook secret, an auth token, a new key);
/// and at the end the ledger counts at least what moved.
///
/// `make test` runs it for ~25 s with a fresh seed (printed); replay with `KEYBRAKE_READING_SEED=<seed>`, run longer
/// with `KEYBRAKE_READING_SECONDS` (`make soak`).
final class ProxyReadingDifferentialTests: XCTestCase, @unchecked Sendable {
    typealias RNG = ProxyInvariantTests.SplitMix64

    /// One generated request, as sent.
    struct Sent: CustomStringConvertible {
        var method: HTTPRequest.Method
        var uri: String
        var contentType: String?
        var body: String?
        var headers: [String: String] = [:]
        var vendor: String
        var description: String { "\(method) \(uri) [\(contentType ?? "no type")] \(body ?? "") \(headers)" }
    }

    func testWhatTheVendorMovesNeverExceedsWhatKeybrakeReadAndPriced() async throws {
        let env = ProcessInfo.processInfo.environment
        let seed = env["KEYBRAKE_READING_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64(Int64.max))
        let seconds = env["KEYBRAKE_READING_SECONDS"].flatMap(Double.init) ?? 25
        print("ProxyReadingDifferentialTests: seed \(seed) (replay with KEYBRAKE_READING_SEED=\(seed)), \(seconds) s")
        let vendor = ReadingVendors(twilioToken: ProxyHarness.twilioToken)
        try await vendor.start()
        defer { vendor.stop() }
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        let sentCount = try await h.run({ config in
            config.proxy.upstreams = [.stripe: vendor.url, .twilio: vendor.url, .resend: vendor.url]
        }) { client in
            let t = try await client.tenantWithCredentials()
            let stripeKey = try await client.vaultKey(t, [
                "max_request_usd": 1, "daily_usd_cap": 1_000_000, "allowed_stripe_accounts": ["acct_ok"],
                "allowed_endpoints": ["POST /v1/charges", "POST /v1/payment_intents", "POST /v1/refunds", "DELETE /v1/subscriptions/*",
                                      "DELETE /v1/subscription_items/*", "GET /v1/**", "* /v1/webhook_endpoints/**", "POST /v1/customers"],
            ])
            let twilioKey = try await client.vaultKey(t, [
                "vendor": "twilio", "max_request_usd": 1, "daily_usd_cap": 1_000_000,
                "allowed_endpoints": ["POST /2010-04-01/Accounts/*/Messages.json", "GET /2010-04-01/**", "* /2010-04-01/Accounts/*/Keys/**"],
            ])
            let resendKey = try await client.vaultKey(t, [
                "vendor": "resend", "max_request_usd": 1, "daily_usd_cap": 1_000_000,
                "allowed_endpoints": ["POST /emails", "POST /emails/batch", "* /api-keys/**", "GET /emails/*"],
            ])
            var rng = RNG(state: seed)
            let deadline = ContinuousClock.now + .seconds(seconds)
            var n = 0
            while ContinuousClock.now < deadline {
                n += 1
                let sent: Sent
                let token: String
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<7: sent = Self.stripeRequest(&rng); token = stripeKey.token
                case 7, 8: sent = Self.twilioRequest(&rng); token = twilioKey.token
                default: sent = Self.resendRequest(&rng); token = resendKey.token
                }
                let before = vendor.movedMicros.withLockedValue { $0 }
                let r = try await client.raw(sent.method, sent.uri, key: token, contentType: sent.contentType, body: sent.body, headers: sent.headers)
                let moved = vendor.movedMicros.withLockedValue { $0 } - before
                let where_ = "request \(n), seed \(seed): \(sent)"
                XCTAssertLessThanOrEqual(moved, 1_000_000, "the vendor moved \(moved) µUSD on a $1-a-request key (\(r.status.code) \(r.text)) — \(where_)")
                XCTAssertLessThan(r.status.code, 500, "\(r.text) — \(where_)")
                for secret in [ProxyHarness.stripeSecret, ProxyHarness.twilioToken, ProxyHarness.resendKey, "whsec_vendorhandedout",
                               "subaccounttoken", "keysecret012", "re_brandnewfullaccess"] where r.text.contains(secret) {
                    XCTFail("a credential reached the agent (\(secret.prefix(12))…): \(r.text) — \(where_)")
                }
                if moved > 1_000_000 { break }
            }
            // The ledger counts at least what moved (Stripe's cents and the others' prices, in µUSD).
            var counted: Int64 = 0
            for key in [stripeKey.id, twilioKey.id, resendKey.id] {
                let day = try await Ledger.day(key)
                counted += day.settled + day.reserved + day.unknown
            }
            XCTAssertGreaterThanOrEqual(counted, vendor.movedMicros.withLockedValue { $0 }, "the ledger counts less than moved (seed \(seed))")
            return n
        }
        print("ProxyReadingDifferentialTests: \(sentCount) requests, \(vendor.requests.withLockedValue { $0 }) reached the vendor, \(vendor.movedMicros.withLockedValue { $0 }) µUSD moved")
        XCTAssertGreaterThan(sentCount, 100, "the generator ran")
    }

    // MARK: - Generators

    /// A parameter as the agent wants it read, and the hostile value a second copy may carry.
    struct Param {
        var name: String
        var value: String
        var hostile: String?
    }

    static func stripeRequest(_ rng: inout RNG) -> Sent {
        let big = "100000", small = String(Int.random(in: 1...99, using: &rng))
        var method = HTTPRequest.Method.post
        var path: String
        var params: [Param]
        switch Int.random(in: 0..<8, using: &rng) {
        case 0: path = "/v1/charges"; params = [Param(name: "amount", value: small, hostile: big), Param(name: "currency", value: "usd")]
        case 1, 2:
            path = "/v1/payment_intents"
            params = [Param(name: "amount", value: Bool.random(using: &rng) ? small : big, hostile: big), Param(name: "currency", value: "usd"),
                      Param(name: "confirm", value: "false", hostile: "true")]
        case 3: path = "/v1/refunds"; params = [Param(name: "amount", value: small, hostile: big), Param(name: "currency", value: "usd"), Param(name: "charge", value: "ch_1")]
        case 4: method = .delete; path = "/v1/subscriptions/sub_1"; params = [Param(name: "invoice_now", value: "false", hostile: "true")]
        case 5: method = .delete; path = "/v1/subscription_items/si_1"; params = [Param(name: "proration_behavior", value: "none", hostile: "always_invoice")]
        case 6: path = "/v1/webhook_endpoints"; params = [Param(name: "url", value: "https://x.example/h")]; if Bool.random(using: &rng) { method = .get }
        default: path = "/v1/customers"; params = [Param(name: "email", value: "a@b.co")]
        }
        params.append(Param(name: "metadata[run]", value: String(Int.random(in: 0...999_999, using: &rng))))
        var sent = place(params, method: method, path: "/stripe" + path, vendor: "stripe", form: "application/x-www-form-urlencoded", &rng)
        switch Int.random(in: 0..<10, using: &rng) {
        case 0: sent.headers["Stripe-Context"] = ["acct_ok", "acct_evil", "acct_ok/acct_evil"].randomElement(using: &rng)!
        case 1: sent.headers["Stripe-Account"] = ["acct_ok", "acct_evil"].randomElement(using: &rng)!
        default: break
        }
        return sent
    }

    static func twilioRequest(_ rng: inout RNG) -> Sent {
        switch Int.random(in: 0..<5, using: &rng) {
        case 0: return Sent(method: .get, uri: "/twilio/2010-04-01/Accounts/AC\(Int.random(in: 1...9, using: &rng)).json", vendor: "twilio")
        case 1: return Sent(method: .get, uri: "/twilio/2010-04-01/Accounts.json", vendor: "twilio")
        case 2: return Sent(method: [.get, .post].randomElement(using: &rng)!, uri: "/twilio/2010-04-01/Accounts/AC1/Keys/SK1.json",
                            contentType: "application/x-www-form-urlencoded", body: "", vendor: "twilio")
        default:
            let params = [Param(name: "To", value: "+15551234567", hostile: "+882" + String(Int.random(in: 100_000...999_999, using: &rng))),
                          Param(name: "From", value: "+15550000000"), Param(name: "Body", value: "hi")]
            return place(params, method: .post, path: "/twilio/2010-04-01/Accounts/AC1/Messages.json", vendor: "twilio",
                         form: "application/x-www-form-urlencoded", &rng)
        }
    }

    static func resendRequest(_ rng: inout RNG) -> Sent {
        let email = #"{"from":"a@b.co","to":["c@d.co"],"subject":"s","text":"t"}"#
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: return Sent(method: .post, uri: "/resend/api-keys", contentType: "application/json", body: #"{"name":"k"}"#, vendor: "resend")
        case 1: return Sent(method: .get, uri: "/resend/api-keys", contentType: "application/json", body: "{}", vendor: "resend")
        case 2:
            let count = Int.random(in: 1...3, using: &rng)
            return Sent(method: .post, uri: "/resend/emails/batch", contentType: "application/json",
                        body: "[" + Array(repeating: email, count: count).joined(separator: ",") + "]", vendor: "resend")
        case 3: return Sent(method: .post, uri: "/resend/emails", contentType: "application/json", body: #"{"from":"a@b.co","to":"c@d.co","subject":"s","subject":"t"}"#, vendor: "resend")
        case 4: return Sent(method: .post, uri: "/resend/emails?scheduled_at=now", contentType: "application/json", body: email, vendor: "resend")
        default: return Sent(method: .post, uri: "/resend/emails", contentType: ["application/json", "text/plain", nil].randomElement(using: &rng)!, body: email, vendor: "resend")
        }
    }

    /// Places parameters in one of the shapes a vendor reads: honest (where the SDK puts them) or hostile.
    static func place(_ params: [Param], method: HTTPRequest.Method, path: String, vendor: String, form: String, _ rng: inout RNG) -> Sent {
        func enc(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? s }
        func pairs(_ ps: [Param]) -> [String] { ps.map { "\(enc($0.name))=\(enc($0.value))" } }
        let hostile = params.filter { $0.hostile != nil }
        var body = pairs(params), query: [String] = []
        var contentType: String? = form
        var headers: [String: String] = [:]
        let target = hostile.randomElement(using: &rng)
        switch Int.random(in: 0..<14, using: &rng) {
        case 0: break                                                                    // honest
        case 1: if let t = target { query.append("\(t.name)=\(t.hostile!)") }           // a second copy in the query (the body wins)
        case 2:                                                                          // one parameter only in the query
            if let t = target { body = pairs(params.filter { $0.name != t.name }); query.append("\(t.name)=\(t.hostile!)") }
        case 3: query = pairs(params.map { Param(name: $0.name, value: $0.hostile ?? $0.value) }); body = []  // all in the query
        case 4: if let t = target { body.append("\(t.name)=\(t.hostile!)") }             // repeated: the last wins
        case 5: if let t = target { body.insert("\(t.name)=\(t.hostile!)", at: 0) }      // repeated: the first is hostile
        case 6: if let t = target { body.append("\(enc(String(t.name.dropLast())))%\(String(format: "%02X", t.name.utf8.last!))=\(t.hostile!)") }
        case 7: if let t = target { body.append("[\(t.name)]=\(t.hostile!)") }          // Rack strips the brackets
        case 8: if let t = target { body.append("\(t.name)]=\(t.hostile!)") }
        case 9: if let t = target, !body.isEmpty { body[body.count - 1] += ";\(t.name)=\(t.hostile!)" }
        case 10:                                                                         // multipart, hostile values
            let boundary = "b\(Int.random(in: 1000...9999, using: &rng))"
            contentType = "multipart/form-data; boundary=\(boundary)"
            let parts = params.map { "--\(boundary)\r\nContent-Disposition: form-data; name=\"\($0.name)\"\r\n\r\n\($0.hostile ?? $0.value)\r\n" }
            return Sent(method: method, uri: path, contentType: contentType, body: parts.joined() + "--\(boundary)--\r\n", vendor: vendor)
        case 11: contentType = [nil, "text/plain", "application/json"].randomElement(using: &rng)!; if let t = target { body.append("\(t.name)=\(t.hostile!)") }
        case 12: headers["Content-Encoding"] = "gzip"; if let t = target { body.append("\(t.name)=\(t.hostile!)") }
        default: if let t = target { body = pairs(params.map { $0.name == t.name ? Param(name: $0.name, value: $0.hostile!) : $0 }) }  // honest shape, hostile value
        }
        // The SDKs send a DELETE's parameters in the query string; a generated DELETE may put them in the body too.
        if method == .delete, Bool.random(using: &rng) { query += body; body = [] }
        let uri = path + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        return Sent(method: method, uri: uri, contentType: body.isEmpty ? nil : contentType, body: body.isEmpty ? nil : body.joined(separator: "&"),
                    headers: headers, vendor: vendor)
    }
}
