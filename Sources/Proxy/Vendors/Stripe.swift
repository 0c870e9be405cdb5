import Foundation
import Hummingbird
import KeybrakeCore
import NIOCore
import Vault

struct StripeAdapter: VendorAdapter {
    let pricer: StripePricer
    var vendor: Vendor { .stripe }
    var registry: EndpointRegistry { .stripe }

    func operationName(method: String, path: String) -> String? {
        StripeOperations.operationName(method: method, normalizedPath: path)
    }

    func credentialHeaders(_ credentials: VendorCredentials) -> [(String, String)] {
        guard case .stripe(let key) = credentials else { return [] }
        return bearer(key)
    }

    func priceFromBody(rule: PricingRule, path: String, body: Data) throws(KeybrakeError) -> PricingDecision {
        try pricer.price(rule: rule, normalizedPath: path, form: FormBody(parsing: body))
    }

    /// `Stripe-Account` and `Stripe-Context` decide whose money a request moves.
    func behaviourHeaders(_ headers: HTTPFields) -> String {
        let account = headers[.stripeAccount], context = headers[.stripeContext]
        if account == nil, context == nil { return "" }
        return "acct=\(account ?? "");ctx=\(context ?? "")"
    }

    func upstreamRequestId(_ response: Forwarder.UpstreamResponse) -> String? { response.header("request-id") }
}
