import KeybrakeCore

/// What a request will cost, in micro-USD, plus the vendor amount it was computed from (for audit).
public struct PriceQuote: Sendable, Equatable {
    public var micros: MicroUSD
    /// The amount in the currency's minor units, when the vendor request named one (Stripe).
    public var amountMinor: Int64?
    /// Lower-case ISO code, when known.
    public var currency: String?

    public init(micros: MicroUSD, amountMinor: Int64? = nil, currency: String? = nil) {
        self.micros = micros
        self.amountMinor = amountMinor
        self.currency = currency
    }
}

/// The pricing step's answer for one request.
public enum PricingDecision: Sendable, Equatable {
    /// Moves no money: nothing to reserve.
    case free
    case priced(PriceQuote)
    /// The body doesn't say how much: GET `lookup.path` upstream, then call `StripePricer.priceLookup`.
    case lookup(StripeLookup)
}

/// A Stripe object to fetch before a request can be priced.
public struct StripeLookup: Sendable, Equatable {
    /// e.g. `/v1/payment_intents/pi_123`; the id is validated so a body can't steer the GET elsewhere.
    public let path: String
    public let kind: Kind
    /// A refund that names its amount but not its currency: the object supplies only the currency.
    public let amountOverride: Int64?

    public enum Kind: Sendable, Equatable {
        /// `amount`, `currency` (confirming a PaymentIntent).
        case paymentIntentAmount
        /// `amount_due`, `currency` (paying an invoice).
        case invoiceAmountDue
        /// `amount - amount_refunded`, `currency` (refunding a charge without an amount).
        case chargeRefundable
        /// `amount_received`, `currency` (refunding a PaymentIntent without an amount).
        case paymentIntentRefundable
        /// `currency` only; `amountOverride` is the new authorised total (increment_authorization).
        /// Distinct from `.paymentIntentAmount` so "already priced at create" never waves it through.
        case paymentIntentIncrement
    }

    public init(path: String, kind: Kind, amountOverride: Int64? = nil) {
        self.path = path
        self.kind = kind
        self.amountOverride = amountOverride
    }
}
