import Foundation
import HTTPTypes
import Hummingbird
import KeybrakeCore
import Keys
import NIOCore
import Vault

struct StripeAdapter: VendorAdapter {
    let pricer: StripePricer
    var vendor: Vendor { .stripe }
    var registry: EndpointRegistry { .stripe }

    /// What stripe-python and stripe-node send (besides Authorization and Idempotency-Key, which Keybrake sets).
    static let requestHeaders: Set<String> = [
        "accept", "accept-language", "content-type", "user-agent", "stripe-version", "stripe-account", "stripe-context",
        "x-stripe-client-user-agent", "x-stripe-client-telemetry",
    ]
    var forwardedHeaders: Set<String> { Self.requestHeaders }
    /// A webhook endpoint's or an ephemeral key's `secret`.
    var secretFields: [String] { ["secret"] }

    func operationName(method: String, path: String) -> String? {
        StripeOperations.operationName(method: method, normalizedPath: path)
    }

    func credentialHeaders(_ credentials: VendorCredentials) -> [(String, String)] {
        guard case .stripe(let key) = credentials else { return [] }
        return bearer(key)
    }

    func secrets(_ credentials: VendorCredentials) -> [String] {
        guard case .stripe(let key) = credentials else { return [] }
        return [key]
    }

    /// `Stripe-Account` and `Stripe-Context` once each, with one value each.
    func readHeaders(_ headers: HTTPFields) throws(KeybrakeError) {
        try RequestReading.checkHeaders(headers, single: [.stripeAccount, .stripeContext])
        for name in [HTTPField.Name.stripeAccount, .stripeContext] where headers[name]?.contains(",") == true {
            // Two values folded into one field: which one the vendor would use is not Keybrake's guess to make.
            throw .invalidRequest("\(name.rawName) holds more than one value; send one account.", field: name.rawName)
        }
    }

    /// Stripe takes parameters from the query string and the body of every method, merged into one bucket (the body
    /// wins a clash, the last repeated name wins), and parses form and multipart bodies alike. Keybrake reads what
    /// the SDKs send — a GET's query, a DELETE's query (`invoice_now`), a POST's form body (JSON under /v2) — and
    /// refuses every other place a parameter could hide.
    func read(method: String, path: String, query: String?, headers: HTTPFields, body: Data) throws(KeybrakeError) -> VendorRequest {
        let query = RequestReading.nonEmpty(query)
        switch method {
        case "GET", "HEAD":
            return try RequestReading.read(method: method, query: query, body: body)
        case "DELETE":
            try RequestReading.refuseBody(body, method: method)
            guard let query else { return VendorRequest() }
            let parameters = try RequestReading.strictForm(Data(query.utf8), where: "query string", repeatable: { _ in false })
            return VendorRequest(parameters: parameters, upstreamQuery: query)
        default:
            try RequestReading.refuseQuery(query, method: method, vendor: .stripe)
            guard !body.isEmpty else { return VendorRequest() }
            let type = RequestReading.bodyType(headers)
            if path.hasPrefix("/v2/") {
                guard type == .json else { throw RequestReading.unsupportedBody(type, accepted: "JSON (application/json)") }
                _ = try RequestReading.strictJSON(body)
                return VendorRequest(body: body)
            }
            guard type == .form else {
                throw RequestReading.unsupportedBody(type, accepted: "a form body (application/x-www-form-urlencoded), as Stripe's SDKs send it")
            }
            return VendorRequest(parameters: try RequestReading.strictForm(body, where: "body", repeatable: { _ in false }), body: body)
        }
    }

    func priceFromBody(rule: PricingRule, path: String, request: VendorRequest) throws(KeybrakeError) -> PricingDecision {
        try pricer.price(rule: rule, normalizedPath: path, form: request.parameters)
    }

    func priceLookup(_ lookup: StripeLookup, objectJSON: Data) throws(KeybrakeError) -> PriceQuote {
        try pricer.priceLookup(lookup, objectJSON: objectJSON)
    }

    /// A charge (maybe uncaptured) or a confirmed PaymentIntent: its later capture or confirm is priced above it.
    func createsCountedObject(path: String) -> Bool { path == "/v1/charges" || path == "/v1/payment_intents" }

    /// `Stripe-Account` and `Stripe-Context` decide whose money a request moves.
    func behaviourHeaders(_ headers: HTTPFields) -> String {
        let account = headers[.stripeAccount], context = headers[.stripeContext]
        if account == nil, context == nil { return "" }
        return "acct=\(account ?? "");ctx=\(context ?? "")"
    }

    /// `Stripe-Account` and every account of a `Stripe-Context`: each must be allowed by the key and its ancestors.
    func checkAccounts(_ headers: HTTPFields, chain: [VaultKey]) throws(KeybrakeError) {
        for account in accountsNamed(headers) where chain.contains(where: { !$0.policy.allowedStripeAccounts.contains(account) }) {
            throw KeybrakeError(status: 403, code: .stripeAccountNotAllowed,
                message: "The account \(account.prefix(64)) (named by Stripe-Account or Stripe-Context) is not in this key's allowed_stripe_accounts.")
        }
    }

    /// The accounts a request acts on: `Stripe-Account`, and each account of a `Stripe-Context` path
    /// (`acct_parent/acct_child`).
    func accountsNamed(_ headers: HTTPFields) -> [String] {
        var accounts: [String] = []
        if let account = headers[.stripeAccount] { accounts.append(account) }
        if let context = headers[.stripeContext] {
            accounts += context.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        }
        return accounts
    }

    /// `Stripe-Account`, then `Stripe-Context`, as sent (`acct_1 acct_parent/acct_child` when both are).
    func auditedAccount(_ headers: HTTPFields) -> String? {
        let named = [headers[.stripeAccount], headers[.stripeContext]].compactMap { $0 }
        return named.isEmpty ? nil : named.joined(separator: " ")
    }

    func upstreamRequestId(_ response: Forwarder.UpstreamResponse) -> String? { response.header("request-id") }
    var replayedResponseHeaders: Set<String> { ["content-type", "request-id", "stripe-version"] }

    /// Stripe's `{"error": {type, code, message}}`; the type picks the SDK's exception class.
    func errorEnvelope(_ error: KeybrakeError) -> [String: Any] {
        let type = switch error.code {
        case "idempotency_key_reused": "idempotency_error"
        case _ where error.status == 429: "rate_limit_error"
        case _ where error.status >= 500: "api_error"
        default: "invalid_request_error"
        }
        return ["error": ["type": type, "code": error.code, "message": error.message]]
    }
}

extension HTTPField.Name {
    static let stripeAccount = HTTPField.Name("Stripe-Account")!
    static let stripeContext = HTTPField.Name("Stripe-Context")!
}
