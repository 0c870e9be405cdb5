import Foundation
import KeybrakeCore

/// Prices Stripe requests from the form body, or names the object to fetch when the body has no amount.
/// Paths are relative to the Stripe API root (`/v1/charges`, not `/stripe/v1/charges`).
public struct StripePricer: Sendable {
    public let fx: FXTable

    public init(fx: FXTable = .default) { self.fx = fx }

    /// Prices a request by the registry's rule for its endpoint (a request the registry does not know moves no
    /// money here: the pipeline refuses it on capped keys before pricing).
    public func price(method: String, normalizedPath: String, form: FormBody) throws(KeybrakeError) -> PricingDecision {
        guard let endpoint = EndpointRegistry.stripe.lookup(method: method.uppercased(), normalizedPath: normalizedPath) else { return .free }
        return try price(rule: endpoint.rule, normalizedPath: normalizedPath, form: form)
    }

    /// Prices a POST by its registry rule (`EndpointRegistry.stripe`); `.none` moves no money.
    public func price(rule: PricingRule, normalizedPath: String, form: FormBody) throws(KeybrakeError) -> PricingDecision {
        let s = PathNormalizer.segments(normalizedPath).map(String.init)
        let operation = StripeOperations.operationName(method: "POST", normalizedPath: normalizedPath) ?? "POST \(normalizedPath)"
        func id(_ i: Int) throws(KeybrakeError) -> String { try Self.objectID(i < s.count ? s[i] : "") }

        switch rule {
        case .amountAndCurrency:
            return .priced(try explicitAmount(form, operation: operation))
        case .paymentIntentCreate:
            // Nothing moves until the PaymentIntent is confirmed; its confirm is priced at its amount then.
            guard try Self.single(form, "confirm") == "true" else { return .free }
            return .priced(try explicitAmount(form, operation: operation))
        case .refund:
            return try refund(form, chargeFromPath: nil, operation: operation)
        case .chargeRefund:
            return try refund(form, chargeFromPath: try id(2), operation: operation)
        case .paymentIntentConfirm:
            let intent = try id(2)
            return .lookup(StripeLookup(path: "/v1/payment_intents/\(intent)", kind: .paymentIntentAmount, countedObject: intent))
        case .terminalPaymentIntent:
            guard let intent = try Self.single(form, "payment_intent") else {
                throw Self.amountRequired("\(operation) needs `payment_intent` so Keybrake can price it against the key's caps.")
            }
            let checked = try Self.objectID(intent, field: "payment_intent")
            return .lookup(StripeLookup(path: "/v1/payment_intents/\(checked)", kind: .paymentIntentAmount, countedObject: checked))
        case .paymentIntentCapture:
            let intent = try id(2)
            return .lookup(StripeLookup(path: "/v1/payment_intents/\(intent)", kind: .paymentIntentCapturable,
                                        amountOverride: try Self.optionalMinorUnits(form, "amount_to_capture"), countedObject: intent))
        case .chargeCapture:
            let charge = try id(2)
            return .lookup(StripeLookup(path: "/v1/charges/\(charge)", kind: .chargeAmount,
                                        amountOverride: try Self.optionalMinorUnits(form, "amount"), countedObject: charge))
        case .incrementAuthorization:
            // `amount` is the new authorised total; what was already counted for the PaymentIntent is subtracted.
            guard let amount = try Self.optionalMinorUnits(form, "amount") else {
                throw Self.amountRequired("\(operation) needs `amount` (the new total, in the currency's smallest unit).")
            }
            let intent = try id(2)
            return .lookup(StripeLookup(path: "/v1/payment_intents/\(intent)", kind: .paymentIntentAmount, amountOverride: amount,
                                        countedObject: intent))
        case .invoicePay:
            return .lookup(StripeLookup(path: "/v1/invoices/\(try id(2))", kind: .invoiceAmountDue))
        case .transferReversal:
            return .lookup(StripeLookup(path: "/v1/transfers/\(try id(2))", kind: .transferReversible,
                                        amountOverride: try Self.optionalMinorUnits(form, "amount")))
        case .applicationFeeRefund:
            return .lookup(StripeLookup(path: "/v1/application_fees/\(try id(2))", kind: .applicationFeeRefundable,
                                        amountOverride: try Self.optionalMinorUnits(form, "amount")))
        case .none, .twilioMessage, .resendEmail, .resendBatch:
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
            case .paymentIntentAmount: amount = try amountField("amount")
            case .paymentIntentCapturable: amount = try amountField("amount_capturable")
            case .chargeAmount: amount = try amountField("amount")
            case .invoiceAmountDue: amount = try amountField("amount_due")
            case .transferReversible:
                amount = max(0, try amountField("amount") - (object["amount_reversed"] == nil ? 0 : try amountField("amount_reversed")))
            case .applicationFeeRefundable:
                amount = max(0, try amountField("amount") - (object["amount_refunded"] == nil ? 0 : try amountField("amount_refunded")))
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

    static func optionalMinorUnits(_ form: FormBody, _ key: String) throws(KeybrakeError) -> Int64? {
        guard let text = try single(form, key) else { return nil }
        return try minorUnits(text, field: key)
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
        KeybrakeError(status: 400, code: .amountRequired, message: message)
    }

    static func upstream(_ detail: String) -> KeybrakeError {
        KeybrakeError(status: 502, code: .upstreamError, message: "Stripe's answer could not be priced: \(detail) Nothing was forwarded.")
    }
}
