import Foundation
import Hummingbird
import KeybrakeCore
import NIOCore
import Vault

struct TwilioAdapter: VendorAdapter {
    let pricer: TwilioPricer
    var vendor: Vendor { .twilio }
    var registry: EndpointRegistry { .twilio }
    /// Twilio has no idempotency of its own: a retry of an unknown outcome could send the SMS twice.
    var idempotencyKeyHeader: String? { nil }

    /// What twilio-python sends (besides Authorization).
    static let requestHeaders: Set<String> = [
        "accept", "accept-charset", "accept-language", "content-type", "user-agent", "x-twilio-client", "x-twilio-webhook-enabled",
    ]
    var forwardedHeaders: Set<String> { Self.requestHeaders }
    /// An Account's `auth_token`; a new API or signing key's `secret`.
    var secretFields: [String] { ["auth_token", "secret"] }
    /// Parameters twilio-python sends as lists (the name repeated); any other name is sent once.
    static let listParameters: Set<String> = [
        "MediaUrl", "Permissions", "PersistentAction", "StatusCallbackEvent", "RecordingStatusCallbackEvent",
        "ConferenceStatusCallbackEvent", "ConferenceRecordingStatusCallbackEvent",
    ]

    /// Twilio paths carry an account SID; whatever the agent's SDK put there, the tenant's real one is used.
    func upstreamPath(_ normalized: String, credentials: VendorCredentials) -> String {
        guard case .twilio(let sid, _) = credentials else { return normalized }
        var parts = normalized.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if let i = parts.firstIndex(of: "Accounts"), i + 1 < parts.count {
            let segment = parts[i + 1]
            // Keep an extension such as `AC….json` on the account resource itself.
            if let dot = segment.firstIndex(of: ".") { parts[i + 1] = sid + segment[dot...] } else { parts[i + 1] = sid }
        }
        return parts.joined(separator: "/")
    }

    func credentialHeaders(_ credentials: VendorCredentials) -> [(String, String)] {
        guard case .twilio(let sid, let token) = credentials else { return [] }
        return [("Authorization", "Basic " + Data("\(sid):\(token)".utf8).base64EncodedString())]
    }

    func secrets(_ credentials: VendorCredentials) -> [String] {
        guard case .twilio(_, let token) = credentials else { return [] }
        return [token]
    }

    /// twilio-python sends a GET's parameters in the query string and a POST's in a form body; a DELETE has none.
    func read(method: String, path: String, query: String?, headers: HTTPFields, body: Data) throws(KeybrakeError) -> VendorRequest {
        let query = RequestReading.nonEmpty(query)
        switch method {
        case "GET", "HEAD":
            return try RequestReading.read(method: method, query: query, body: body)
        default:
            try RequestReading.refuseQuery(query, method: method, vendor: .twilio)
            guard !body.isEmpty else { return VendorRequest() }
            let type = RequestReading.bodyType(headers)
            guard type == .form else {
                throw RequestReading.unsupportedBody(type, accepted: "a form body (application/x-www-form-urlencoded), as Twilio's SDKs send it")
            }
            let parameters = try RequestReading.strictForm(body, where: "body", repeatable: { Self.listParameters.contains($0) })
            return VendorRequest(parameters: parameters, body: body)
        }
    }

    func priceFromBody(rule: PricingRule, path: String, request: VendorRequest) throws(KeybrakeError) -> PricingDecision {
        guard rule == .twilioMessage else { return .free }
        return pricer.priceMessage(form: request.parameters)
    }

    /// The price Twilio reports, above the estimate too: the ledger must count at least what moved.
    func settledAmount(responseBody: ByteBuffer) -> MicroUSD? {
        TwilioPricer.settledPrice(responseJSON: Data(responseBody.readableBytesView))
    }

    func upstreamRequestId(_ response: Forwarder.UpstreamResponse) -> String? { response.header("twilio-request-id") }
    var replayedResponseHeaders: Set<String> { ["content-type", "twilio-request-id"] }

    /// Twilio's `{code, message, status, more_info}`: its codes are integers, so ours rides in the message and
    /// `more_info` (and the Keybrake-Error-Code header).
    func errorEnvelope(_ error: KeybrakeError) -> [String: Any] {
        let code = switch error.status {
        case 401: 20003
        case 403: 20403
        case 404: 20404
        case 429: 20429
        case 413: 21617
        case 409: 20409
        case _ where error.status >= 500: 20500
        default: 21400
        }
        return ["code": code, "message": "\(error.message) [\(error.code)]", "status": error.status, "more_info": "keybrake:\(error.code)"]
    }
}
