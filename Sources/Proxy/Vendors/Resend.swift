import Foundation
import Hummingbird
import KeybrakeCore
import NIOCore
import Vault

struct ResendAdapter: VendorAdapter {
    let pricer: ResendPricer
    var vendor: Vendor { .resend }
    var registry: EndpointRegistry { .resend }

    func credentialHeaders(_ credentials: VendorCredentials) -> [(String, String)] {
        guard case .resend(let key) = credentials else { return [] }
        return bearer(key)
    }

    func priceFromBody(rule: PricingRule, path: String, body: Data) throws(KeybrakeError) -> PricingDecision {
        try pricer.price(rule: rule, jsonBody: body)
    }

    func upstreamRequestId(_ response: Forwarder.UpstreamResponse) -> String? { response.header("x-request-id") }
}
