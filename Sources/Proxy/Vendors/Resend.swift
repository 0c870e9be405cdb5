import Foundation
import Hummingbird
import KeybrakeCore
import NIOCore
import Vault

struct ResendAdapter: VendorAdapter {
    let pricer: ResendPricer
    var vendor: Vendor { .resend }
    var registry: EndpointRegistry { .resend }

    /// What resend-python sends (besides Authorization and Idempotency-Key, which Keybrake sets).
    static let requestHeaders: Set<String> = ["accept", "content-type", "user-agent", "x-batch-validation"]
    var forwardedHeaders: Set<String> { Self.requestHeaders }
    /// A new API key's `token`; a webhook's `signing_secret`.
    var secretFields: [String] { ["token", "signing_secret"] }

    func credentialHeaders(_ credentials: VendorCredentials) -> [(String, String)] {
        guard case .resend(let key) = credentials else { return [] }
        return bearer(key)
    }

    func secrets(_ credentials: VendorCredentials) -> [String] {
        guard case .resend(let key) = credentials else { return [] }
        return [key]
    }

    /// resend-python sends JSON bodies on every method (`{}` on a GET or DELETE) and list options in a GET's query.
    func read(method: String, path: String, query: String?, headers: HTTPFields, body: Data) throws(KeybrakeError) -> VendorRequest {
        let query = RequestReading.nonEmpty(query)
        if method != "GET", method != "HEAD" { try RequestReading.refuseQuery(query, method: method, vendor: .resend) }
        guard !body.isEmpty else { return VendorRequest(upstreamQuery: query) }
        let type = RequestReading.bodyType(headers)
        guard type == .json else { throw RequestReading.unsupportedBody(type, accepted: "JSON (application/json), as Resend's SDKs send it") }
        _ = try RequestReading.strictJSON(body)
        return VendorRequest(body: body, upstreamQuery: query)
    }

    func priceFromBody(rule: PricingRule, path: String, request: VendorRequest) throws(KeybrakeError) -> PricingDecision {
        try pricer.price(rule: rule, jsonBody: request.body)
    }

    func upstreamRequestId(_ response: Forwarder.UpstreamResponse) -> String? { response.header("x-request-id") }
    var replayedResponseHeaders: Set<String> { ["content-type", "x-request-id"] }

    /// Resend's `{statusCode, name, message}`.
    func errorEnvelope(_ error: KeybrakeError) -> [String: Any] {
        ["statusCode": error.status, "name": error.code, "message": error.message]
    }
}
