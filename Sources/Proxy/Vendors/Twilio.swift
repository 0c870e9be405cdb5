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
    var deduplicatesIdempotencyKeys: Bool { false }

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

    func priceFromBody(rule: PricingRule, path: String, body: Data) throws(KeybrakeError) -> PricingDecision {
        guard rule == .twilioMessage else { return .free }
        return pricer.priceMessage(form: FormBody(parsing: body))
    }

    /// The price Twilio reports, above the estimate too: the ledger must count at least what moved.
    func settledAmount(responseBody: ByteBuffer) -> MicroUSD? {
        TwilioPricer.settledPrice(responseJSON: Data(responseBody.readableBytesView))
    }

    func upstreamRequestId(_ response: Forwarder.UpstreamResponse) -> String? { response.header("twilio-request-id") }
}
