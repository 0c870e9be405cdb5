import Foundation
import Hummingbird
import KeybrakeCore
import Keys
import NIOCore
import Vault

/// What differs between vendors, in one place per vendor (Stripe.swift, Twilio.swift, Resend.swift). The pipeline
/// switches on the vendor once (`ProxyPipeline.handle`) and runs generically over the adapter, so these calls are
/// specialised, not existential, on the hot path.
protocol VendorAdapter: Sendable {
    var vendor: Vendor { get }
    /// Every endpoint the adapter forwards, with its money class and pricing rule.
    var registry: EndpointRegistry { get }
    /// The header the vendor deduplicates requests by, so a retry with the first attempt's key cannot act twice
    /// (nil: the vendor has none).
    var idempotencyKeyHeader: String? { get }

    /// The path sent upstream for the tenant (Twilio: the tenant's own account SID in place of the agent's).
    func upstreamPath(_ normalized: String, credentials: VendorCredentials) -> String
    /// The operation's name for audit rows and messages (Stripe: `charges.create`).
    func operationName(method: String, path: String) -> String?
    /// The real credential, as the vendor takes it.
    func credentialHeaders(_ credentials: VendorCredentials) -> [(String, String)]
    /// The secret strings of the tenant's credential: masked wherever one appears in an answer.
    func secrets(_ credentials: VendorCredentials) -> [String]
    /// JSON fields of the vendor's answers that carry secrets (a second layer behind the credential class).
    var secretFields: [String] { get }
    /// Request headers forwarded upstream, lower-case: what the vendor's official SDKs send. Everything else stays.
    var forwardedHeaders: Set<String> { get }
    /// The request's headers as the vendor reads them: refuses a compressed body and a second copy of a header the
    /// vendor reads once (the route phase, before the accounts they name are checked).
    func readHeaders(_ headers: HTTPFields) throws(KeybrakeError)
    /// The request as the vendor will read it (its parameters, from wherever the vendor takes them), or a refusal
    /// naming what Keybrake will not forward. `path` is the normalized vendor path.
    func read(method: String, path: String, query: String?, headers: HTTPFields, body: Data) throws(KeybrakeError) -> VendorRequest
    /// The amount the request names, by the endpoint's registry rule.
    func priceFromBody(rule: PricingRule, path: String, request: VendorRequest) throws(KeybrakeError) -> PricingDecision
    /// The amount of a `.lookup` decision, from the object the vendor returned for `lookup.path`.
    func priceLookup(_ lookup: StripeLookup, objectJSON: Data) throws(KeybrakeError) -> PriceQuote
    /// A priced request to `path` creates an object whose later capture or confirm is priced above what this
    /// request moved (a charge, maybe uncaptured; a confirmed PaymentIntent): its id is counted once it settles.
    func createsCountedObject(path: String) -> Bool
    /// Headers that change what the vendor does: part of a request's identity (fingerprint, automatic key).
    func behaviourHeaders(_ headers: HTTPFields) -> String
    /// Refuses a request whose headers name a vendor account the key or one of its ancestors (`chain`) does not allow.
    func checkAccounts(_ headers: HTTPFields, chain: [VaultKey]) throws(KeybrakeError)
    /// The account the request is audited under, as its headers name it (nil: the tenant's own).
    func auditedAccount(_ headers: HTTPFields) -> String?
    /// What moved, from the vendor's 2xx answer, when the vendor says (Twilio's `price`); nil: what was reserved.
    func settledAmount(responseBody: ByteBuffer) -> MicroUSD?
    /// The vendor's id of the request, for the audit row.
    func upstreamRequestId(_ response: Forwarder.UpstreamResponse) -> String?
    /// Response headers (lower-case) an idempotency record keeps and a replay sends again.
    var replayedResponseHeaders: Set<String> { get }
    /// The JSON body of an error in the vendor's own envelope, so its SDK raises its usual exception with our message.
    func errorEnvelope(_ error: KeybrakeError) -> [String: Any]
}

extension VendorAdapter {
    var idempotencyKeyHeader: String? { "Idempotency-Key" }
    /// The vendor honours an idempotency key: a retry of an unknown outcome may be sent again with the same key.
    var deduplicatesIdempotencyKeys: Bool { idempotencyKeyHeader != nil }
    func upstreamPath(_ normalized: String, credentials: VendorCredentials) -> String { normalized }
    func operationName(method: String, path: String) -> String? { nil }
    func behaviourHeaders(_ headers: HTTPFields) -> String { "" }
    func checkAccounts(_ headers: HTTPFields, chain: [VaultKey]) throws(KeybrakeError) {}
    func auditedAccount(_ headers: HTTPFields) -> String? { nil }
    func readHeaders(_ headers: HTTPFields) throws(KeybrakeError) { try RequestReading.checkHeaders(headers, single: []) }
    func settledAmount(responseBody: ByteBuffer) -> MicroUSD? { nil }
    func priceLookup(_ lookup: StripeLookup, objectJSON: Data) throws(KeybrakeError) -> PriceQuote { throw .internalError }
    func createsCountedObject(path: String) -> Bool { false }
    /// An error in the vendor's own envelope (DESIGN §8).
    func errorResponse(_ error: KeybrakeError) -> Response { VendorErrorRenderer.response(error, envelope: errorEnvelope(error)) }

    func bearer(_ secret: String) -> [(String, String)] { [("Authorization", "Bearer \(secret)")] }
}

/// The three adapters, built once from the proxy's configuration.
struct VendorAdapters: Sendable {
    let stripe: StripeAdapter
    let twilio: TwilioAdapter
    let resend: ResendAdapter

    init(config: ProxyConfiguration) {
        stripe = StripeAdapter(pricer: StripePricer(fx: config.fx))
        twilio = TwilioAdapter(pricer: config.twilio)
        resend = ResendAdapter(pricer: config.resend)
    }
}
