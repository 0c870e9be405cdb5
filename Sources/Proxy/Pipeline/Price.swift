import Foundation
import KeybrakeCore
import NIOCore
import Vault

extension ProxyPipeline {
    /// Phase 4: the amount the request's parameters name, by the endpoint's registry rule. Lookups come after the
    /// claim, so parallel duplicates don't repeat them.
    func priceFromBody<A: VendorAdapter>(_ a: A, _ f: inout Flight, path: String, read: VendorRequest) throws -> PricingDecision {
        // A parameter that turns an endpoint which moves no money into one that moves money Keybrake cannot price
        // (`DELETE /v1/subscriptions/{id}?invoice_now=true`): refused on a capped key, like the endpoint class.
        if let endpoint = f.endpoint, f.key.chainIsCapped,
           let parameter = endpoint.unpricedWhen.first(where: { $0.isMet(by: read.parameters.first($0.name)) }) {
            let value = read.parameters.first(parameter.name) ?? ""
            throw Denial(error: KeybrakeError(status: 403, code: "endpoint_not_priced",
                message: "\(f.method) \(path) with \(parameter.name)=\(value.prefix(40)) is refused on capped key '\(f.key.policy.label)' (\(f.key.id)): \(endpoint.reason ?? "it moves money Keybrake cannot price"). Send it without \(parameter.name), or use a key without caps for it."))
        }
        guard let endpoint = f.endpoint, endpoint.money == .pricedFromBody || endpoint.money == .pricedByLookup else { return .free }
        let decision: PricingDecision
        do {
            decision = try a.priceFromBody(rule: endpoint.rule, path: path, request: read)
        } catch {
            throw Denial(error: error)
        }
        if case .priced(let quote) = decision { note(quote, &f) }
        if case .lookup(let lookup) = decision, let object = lookup.countedObject { f.countedObject = .existing(object) }
        // A charge (maybe uncaptured) or a confirmed PaymentIntent: its later capture or confirm is priced above this.
        if case .priced = decision, f.vendor == .stripe, path == "/v1/charges" || path == "/v1/payment_intents" {
            f.countedObject = .createdByThisRequest
        }
        return decision
    }

    func note(_ quote: PriceQuote, _ f: inout Flight) {
        f.amount = quote.micros
        f.audit.amountMicros = quote.micros.micros
        f.audit.amountMinor = quote.amountMinor
        f.audit.currency = quote.currency
    }

    /// Phase 6: the object's *current* amount, read upstream just before it moves money, less what Keybrake already
    /// counted for that object (a PaymentIntent created with `confirm=true`, a charge created uncaptured).
    func priceByLookup<A: VendorAdapter>(_ a: A, _ lookup: StripeLookup, _ f: inout Flight, creds: VendorCredentials) async throws -> PricingDecision {
        let upstream: Forwarder.UpstreamResponse
        do {
            upstream = try await forwarder.send(vendor: f.vendor, method: "GET", url: baseURL(f.vendor) + lookup.path,
                                                headers: a.credentialHeaders(creds), body: nil, logger: f.logger)
        } catch .busy {
            throw Denial(error: Self.upstreamBusy(f.vendor, what: "looking up \(lookup.path) to price this request"))
        } catch {
            throw Denial(error: KeybrakeError(status: 502, code: "upstream_error",
                message: "Could not look up \(lookup.path) at \(f.vendor.rawValue) to price this request; nothing was sent. Retry shortly."))
        }
        guard (200..<300).contains(upstream.status) else {
            throw Denial(error: KeybrakeError(status: upstream.status == 404 ? 404 : 400, code: "amount_required",
                message: "Could not price this request: looking up \(lookup.path) returned \(upstream.status). Nothing was sent."))
        }
        var quote: PriceQuote
        do {
            quote = try adapters.stripe.pricer.priceLookup(lookup, objectJSON: Data(upstream.body.readableBytesView))
        } catch {
            throw Denial(error: error)
        }
        if let object = lookup.countedObject {
            let ledger = self.ledger, tenantId = f.key.tenantId, vendor = f.vendor.rawValue, logger = f.logger
            let counted = try await bounded { try await ledger.countedFor(tenantId: tenantId, vendor: vendor, objectId: object, logger: logger) }
            quote.micros = MicroUSD(max(0, quote.micros.micros - counted.micros))
        }
        note(quote, &f)
        return .priced(quote)
    }

    func baseURL(_ vendor: Vendor) -> String { config.upstreams[vendor] ?? "" }
}
