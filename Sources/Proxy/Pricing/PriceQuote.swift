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
        /// `amount_capturable`, `currency` (capturing a PaymentIntent without `amount_to_capture`).
        case paymentIntentCapturable
        /// `amount`, `currency` (capturing a charge).
        case chargeAmount
        /// `amount - amount_reversed`, `currency` (reversing a transfer).
        case transferReversible
        /// `amount - amount_refunded`, `currency` (refunding an application fee).
        case applicationFeeRefundable
    }

    /// An object whose money Keybrake may already have counted (a PaymentIntent created with `confirm=true`, a
    /// charge created uncaptured): only the part above what was counted for it is priced.
    public let countedObject: String?

    public init(path: String, kind: Kind, amountOverride: Int64? = nil, countedObject: String? = nil) {
        self.path = path
        self.kind = kind
        self.amountOverride = amountOverride
        self.countedObject = countedObject
    }
}
