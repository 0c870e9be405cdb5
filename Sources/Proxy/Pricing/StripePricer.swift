import Foundation
import KeybrakeCore

/// Prices Stripe requests from the form body, or names the object to fetch when the body has no amount.
/// Paths are relative to the Stripe API root (`/v1/charges`, not `/stripe/v1/charges`).
public struct StripePricer: Sendable {
    public let fx: FXTable

    public init(fx: FXTable = .default) { self.fx = fx }

    /// Create endpoints whose body carries `amount` + `currency`.
    static let explicitAmountResources: Set<String> = ["charges", "payment_intents", "transfers", "payouts", "topups"]

    public func price(method: String, normalizedPath: String, form: FormBody) throws(KeybrakeError) -> PricingDecision {
        guard method.uppercased() == "POST" else { return .free }
        let s = PathNormalizer.segments(normalizedPath).map(String.init)
        guard s.first == "v1" else { return .free }
        let operation = StripeOperations.operationName(method: "POST", normalizedPath: normalizedPath) ?? "POST \(normalizedPath)"

        switch (s.count, s.count > 1 ? s[1] : "", s.count > 3 ? s[3] : "") {
        case (2, let resource, _) where Self.explicitAmountResources.contains(resource):
            return .priced(try explicitAmount(form, operation: operation))
        case (2, "refunds", _):
            return try refund(form, chargeFromPath: nil, operation: operation)
        // Legacy refund routes Stripe still serves; left free they would bypass every cap.
        case (4, "charges", "refunds"), (4, "charges", "refund"):
            return try refund(form, chargeFromPath: try Self.objectID(s[2]), operation: operation)
        case (4, "payment_intents", "confirm"):
            return .lookup(StripeLookup(path: "/v1/payment_intents/\(try Self.objectID(s[2]))", kind: .paymentIntentAmount))
        case (4, "payment_intents", "increment_authorization"):
            // `amount` is the new total: pricing all of it over-counts the part already reserved at
            // create, which is the safe direction. The currency comes from the PaymentIntent.
            guard let text = try Self.single(form, "amount") else {
                throw Self.amountRequired("\(operation) needs `amount` (the new total, in the currency's smallest unit).")
            }
            return .lookup(StripeLookup(
                path: "/v1/payment_intents/\(try Self.objectID(s[2]))", kind: .paymentIntentIncrement,
                amountOverride: try Self.minorUnits(text, field: "amount")
            ))
        case (4, "invoices", "pay"):
            return .lookup(StripeLookup(path: "/v1/invoices/\(try Self.objectID(s[2]))", kind: .invoiceAmountDue))
        // `/v1/payment_intents/{id}/capture` (with or without `amount_to_capture`) and
        // `/v1/charges/{id}/capture` stay free: capture can only take up to the amount authorised,
        // which was already counted at create/confirm; pricing it again would double-count.
        default:
            return .free
        }
    }

    /// Prices a `.lookup` decision from the object Stripe returned for `lookup.path` (a 2xx body).
    public func priceLookup(_ lookup: StripeLookup, objectJSON: Data) throws(KeybrakeError) -> PriceQuote {
        guard let object = ExactJSON.parse(objectJSON), case .object = object else {
            throw Self.upstream("GET \(lookup.path) did not return a JSON object.")
        }
        guard let currency = object["currency"]?.stringValue, !currency.isEmpty else {
            throw Self.upstream("GET \(lookup.path) returned no `currency`.")
        }
        func amountField(_ name: String) throws(KeybrakeError) -> Int64 {
            guard let value = object[name]?.int64Value, value >= 0 else {
                throw Self.upstream("GET \(lookup.path) returned no valid `\(name)`.")
            }
            return value
        }
        let amount: Int64
        if let override = lookup.amountOverride {
            amount = override
        } else {
            switch lookup.kind {
            case .paymentIntentAmount, .paymentIntentIncrement: amount = try amountField("amount")
            case .invoiceAmountDue: amount = try amountField("amount_due")
            case .paymentIntentRefundable: amount = try amountField("amount_received")
            case .chargeRefundable:
                let total = try amountField("amount")
                let refunded = object["amount_refunded"] == nil ? 0 : try amountField("amount_refunded")
                amount = max(0, total - refunded)
            }
        }
        let micros = try fx.microUSD(amountMinor: amount, currency: currency)
        return PriceQuote(micros: micros, amountMinor: amount, currency: currency.lowercased())
    }

    // MARK: - Rules

    private func explicitAmount(_ form: FormBody, operation: String) throws(KeybrakeError) -> PriceQuote {
        guard let amountText = try Self.single(form, "amount") else {
            throw Self.amountRequired("\(operation) needs `amount` in the currency's smallest unit (e.g. 1000 for $10.00) so Keybrake can check it against the key's caps.")
        }
        let amount = try Self.minorUnits(amountText, field: "amount")
        guard let currency = try Self.single(form, "currency") else {
            throw Self.amountRequired("\(operation) needs `currency` (e.g. `usd`) so Keybrake can convert `amount` to USD for the key's caps.")
        }
        return PriceQuote(micros: try fx.microUSD(amountMinor: amount, currency: currency), amountMinor: amount, currency: currency.lowercased())
    }

    private func refund(_ form: FormBody, chargeFromPath: String?, operation: String) throws(KeybrakeError) -> PricingDecision {
        let amountText = try Self.single(form, "amount")
        var amount: Int64?
        if let amountText { amount = try Self.minorUnits(amountText, field: "amount") }
        if let amount, let currency = try Self.single(form, "currency") {
            return .priced(PriceQuote(micros: try fx.microUSD(amountMinor: amount, currency: currency), amountMinor: amount, currency: currency.lowercased()))
        }
        // Without both, the charge or PaymentIntent supplies the currency (and the amount if absent).
        var charge = chargeFromPath
        if charge == nil { charge = try Self.single(form, "charge") }
        if let charge {
            return .lookup(StripeLookup(path: "/v1/charges/\(try Self.objectID(charge, field: "charge"))", kind: .chargeRefundable, amountOverride: amount))
        }
        if let intent = try Self.single(form, "payment_intent") {
            return .lookup(StripeLookup(path: "/v1/payment_intents/\(try Self.objectID(intent, field: "payment_intent"))", kind: .paymentIntentRefundable, amountOverride: amount))
        }
        throw Self.amountRequired("\(operation) needs `charge` or `payment_intent` so Keybrake can price the refund against the key's caps.")
    }

    // MARK: - Helpers

    /// A pricing parameter sent twice is refused: Keybrake and Stripe might read different copies.
    static func single(_ form: FormBody, _ key: String) throws(KeybrakeError) -> String? {
        let values = form.all(key)
        guard values.count <= 1 else {
            throw .invalidRequest("`\(key)` appears more than once; send it once so the amount Keybrake checks is the one Stripe uses.", field: key)
        }
        guard let value = values.first, !value.isEmpty else { return nil }
        return value
    }

    static func minorUnits(_ text: String, field: String) throws(KeybrakeError) -> Int64 {
        guard text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = Int64(text) else {
            throw .invalidRequest("`\(field)` must be a non-negative integer in the currency's smallest unit (e.g. 1000 for $10.00), got `\(text.prefix(40))`.", field: field)
        }
        return value
    }

    /// Ids go into a GET path Keybrake sends with the tenant's real key, so only Stripe's id alphabet passes.
    static func objectID(_ id: String, field: String = "id") throws(KeybrakeError) -> String {
        guard !id.isEmpty, id.utf8.count <= 255,
              id.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F })
        else {
            throw .invalidRequest("`\(id.prefix(40))` is not a valid Stripe object id (letters, digits and _ only).", field: field)
        }
        return id
    }

    static func amountRequired(_ message: String) -> KeybrakeError {
        KeybrakeError(status: 400, code: "amount_required", message: message)
    }

    static func upstream(_ detail: String) -> KeybrakeError {
        KeybrakeError(status: 502, code: "upstream_error", message: "Stripe's answer could not be priced: \(detail) Nothing was forwarded.")
    }
}
