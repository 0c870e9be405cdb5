import Foundation
import KeybrakeCore
import NIOCore
import Vault

extension ProxyPipeline {
    /// Phase 4: the amount the request's parameters name, by the endpoint's registry rule. Lookups come after the
    /// claim, so parallel duplicates don't repeat them.
    func priceFromBody<A: VendorAdapter>(_ a: A, _ r: inout ProxiedRequest, path: String, read: VendorRequest) throws -> PricingDecision {
        // A parameter that turns an endpoint which moves no money into one that moves money Keybrake cannot price
        // (`DELETE /v1/subscriptions/{id}?invoice_now=true`): refused on a capped key, like the endpoint class.
        if let endpoint = r.endpoint, r.key.chainIsCapped,
           let parameter = endpoint.unpricedWhen.first(where: { $0.isMet(by: read.parameters.first($0.name)) }) {
            let value = read.parameters.first(parameter.name) ?? ""
            throw Denial(error: KeybrakeError(status: 403, code: .endpointNotPriced,
                message: "\(r.method) \(path) with \(parameter.name)=\(value.prefix(40)) is refused on capped key '\(r.key.policy.label)' (\(r.key.id)): \(endpoint.reason ?? "it moves money Keybrake cannot price"). Send it without \(parameter.name), or use a key without caps for it."))
        }
        guard let endpoint = r.endpoint, endpoint.money == .pricedFromBody || endpoint.money == .pricedByLookup else { return .free }
        let decision: PricingDecision
        do {
            decision = try a.priceFromBody(rule: endpoint.rule, path: path, request: read)
        } catch {
            throw Denial(error: error)
        }
        if case .priced(let quote) = decision { note(quote, &r) }
        if case .lookup(let lookup) = decision, let object = lookup.countedObject { r.price.countedObject = .existing(object) }
        if case .priced = decision, a.createsCountedObject(path: path) { r.price.countedObject = .createdByThisRequest }
        return decision
    }

    func note(_ quote: PriceQuote, _ r: inout ProxiedRequest) {
        r.price.amount = quote.micros
        r.audit.amountMicros = quote.micros.micros
        r.audit.amountMinor = quote.amountMinor
        r.audit.currency = quote.currency
    }

    /// Phase 6: the object's *current* amount, read upstream just before it moves money, less what Keybrake already
    /// counted for that object (a PaymentIntent created with `confirm=true`, a charge created uncaptured).
    func priceByLookup<A: VendorAdapter>(_ a: A, _ lookup: StripeLookup, _ r: inout ProxiedRequest, creds: VendorCredentials) async throws {
        let upstream: Forwarder.UpstreamResponse
        do {
            upstream = try await forwarder.send(vendor: r.vendor, method: "GET", url: baseURL(r.vendor) + lookup.path,
                                                headers: a.credentialHeaders(creds), body: nil, logger: r.logger)
        } catch .busy {
            throw Denial(error: Self.upstreamBusy(r.vendor, what: "looking up \(lookup.path) to price this request"))
        } catch {
            throw Denial(error: KeybrakeError(status: 502, code: .upstreamError,
                message: "Could not look up \(lookup.path) at \(r.vendor.rawValue) to price this request; nothing was sent. Retry shortly."))
        }
        guard (200..<300).contains(upstream.status) else {
            throw Denial(error: KeybrakeError(status: upstream.status == 404 ? 404 : 400, code: .amountRequired,
                message: "Could not price this request: looking up \(lookup.path) returned \(upstream.status). Nothing was sent."))
        }
        var quote: PriceQuote
        do {
            quote = try a.priceLookup(lookup, objectJSON: Data(upstream.body.readableBytesView))
        } catch {
            throw Denial(error: error)
        }
        if let object = lookup.countedObject {
            let ledger = self.ledger, tenantId = r.key.tenantId, vendor = r.vendor.rawValue, logger = r.logger
            let counted = try await bounded { try await ledger.countedFor(tenantId: tenantId, vendor: vendor, objectId: object, logger: logger) }
            quote.micros = MicroUSD(max(0, quote.micros.micros - counted.micros))
        }
        note(quote, &r)
    }

    func baseURL(_ vendor: Vendor) -> String { config.upstreams[vendor] ?? "" }
}
