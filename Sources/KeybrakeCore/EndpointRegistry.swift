/// How an endpoint relates to money (DESIGN §7 Pricing). Every endpoint a vendor adapter forwards is in exactly one
/// class; a POST the registry does not know is treated as `.unpriced` on a capped key, so no wildcard opens a route
/// around the cap.
public enum MoneyClass: String, Sendable, CaseIterable {
    /// The body says how much (amount + currency, a message, a batch of emails).
    case pricedFromBody = "priced_from_body"
    /// The object's current amount is read upstream at the moment it moves money (or the vendor's own preview).
    case pricedByLookup = "priced_by_lookup"
    /// Reads, customers, metadata updates …
    case movesNoMoney = "moves_no_money"
    /// Moves money Keybrake cannot price before it moves: a capped key may not allow it.
    case unpriced = "moves_money_unpriced"
    /// Reveals or creates a vendor credential (an auth token, an API key, a webhook signing secret), or sends the
    /// account's events elsewhere: refused for every vault key, capped or not (DESIGN §7).
    case credential = "vendor_credential"
}

/// A parameter value that makes an endpoint which otherwise moves no money move money Keybrake cannot price
/// (`DELETE /v1/subscriptions/{id}` with `invoice_now=true`).
public struct MoneyParameter: Sendable {
    public enum Condition: Sendable {
        /// Any value the vendor could read as true: everything but absent, empty and `false`.
        case notFalse
        /// This value (compared case-insensitively, so no spelling slips past).
        case equals(String)
    }

    public let name: String
    public let condition: Condition

    public init(_ name: String, _ condition: Condition) {
        self.name = name
        self.condition = condition
    }

    /// Whether `value` (the parameter as the vendor will read it) sets the condition.
    public func isMet(by value: String?) -> Bool {
        guard let value, !value.isEmpty else { return false }
        switch condition {
        case .notFalse: return value.lowercased() != "false"
        case .equals(let expected): return value.lowercased() == expected.lowercased()
        }
    }
}

/// The vendor adapter's rule for pricing one endpoint (what to read from the body, or what to look up).
public enum PricingRule: String, Sendable {
    case none
    // Stripe
    /// `amount` + `currency` in the body (charges, transfers, payouts, top-ups, treasury payments).
    case amountAndCurrency
    /// `amount` + `currency` when created with `confirm=true`; otherwise nothing moves until it is confirmed.
    case paymentIntentCreate
    /// `amount` (+ `currency`), or the charge's / PaymentIntent's refundable remainder.
    case refund
    /// Legacy `/v1/charges/{id}/refund(s)`: like `refund`, the charge from the path.
    case chargeRefund
    /// The PaymentIntent's current `amount`, less what Keybrake already counted for it.
    case paymentIntentConfirm
    /// `amount_to_capture` or the PaymentIntent's `amount_capturable`, less what was already counted for it.
    case paymentIntentCapture
    /// `amount` or the charge's uncaptured `amount`, less what was already counted for it.
    case chargeCapture
    /// The new authorised total (`amount`), less what was already counted; the currency from the PaymentIntent.
    case incrementAuthorization
    /// The invoice's current `amount_due`.
    case invoicePay
    /// `amount` or the transfer's unreversed remainder.
    case transferReversal
    /// `amount` or the application fee's unrefunded remainder.
    case applicationFeeRefund
    /// A Terminal reader charging the PaymentIntent named in the body: its current amount, less what was counted.
    case terminalPaymentIntent
    // Twilio
    /// Per-destination estimate per segment; settled from the price Twilio reports.
    case twilioMessage
    // Resend
    case resendEmail
    case resendBatch
}

/// One endpoint of a vendor's API: `METHOD /path` with `*` for one id segment (`*.json`: an id with that suffix).
public struct RegisteredEndpoint: Sendable, CustomStringConvertible {
    public let method: String
    public let path: String
    public let segments: [Substring]
    public let money: MoneyClass
    public let rule: PricingRule
    /// Why an endpoint is `.unpriced` or `.credential`, or what `unpricedWhen` means (shown to the tenant).
    public let reason: String?
    /// Parameters that make a request to this endpoint move money Keybrake cannot price.
    public let unpricedWhen: [MoneyParameter]

    init(_ method: String, _ path: String, _ money: MoneyClass, _ rule: PricingRule = .none,
         unpricedWhen: [MoneyParameter] = [], reason: String? = nil) {
        self.method = method
        self.path = path
        self.segments = path.split(separator: "/", omittingEmptySubsequences: true)
        self.money = money
        self.rule = rule
        self.unpricedWhen = unpricedWhen
        self.reason = reason
    }

    /// GET routes: reads, which move no money.
    static func reads(_ paths: [String]) -> [RegisteredEndpoint] { paths.map { .init("GET", $0, .movesNoMoney) } }

    public var description: String { "\(method) \(path)" }

    func matches(method m: String, segments s: [Substring]) -> Bool {
        guard m == method, s.count == segments.count else { return false }
        for (a, b) in zip(segments, s) where a != b {
            // `*` is any id; `*.json` (Twilio) any id with that suffix.
            guard a.first == "*", a == "*" || b.hasSuffix(a.dropFirst()) else { return false }
        }
        return true
    }

    /// A concrete path this entry matches (ids as `x`), to test allowlist patterns against.
    public var examplePath: String { "/" + segments.map { $0.first == "*" ? "x" + $0.dropFirst() : String($0) }.joined(separator: "/") }
}

/// The endpoints one vendor adapter forwards, each with its money class. Literal entries are listed before the
/// wildcard entries they would otherwise shadow (`/v1/invoices/create_preview` before `/v1/invoices/*`): the first
/// match wins.
public struct EndpointRegistry: Sendable {
    public let vendor: Vendor
    public let entries: [RegisteredEndpoint]
    /// Entries by segment count and first two segments (the second may be `*`), in order: a POST compares a handful.
    let index: [String: [RegisteredEndpoint]]

    init(vendor: Vendor, _ entries: [RegisteredEndpoint]) {
        self.vendor = vendor
        self.entries = entries
        var index: [String: [RegisteredEndpoint]] = [:]
        for e in entries {
            index[Self.indexKey(e.segments, second: e.segments.count > 1 ? e.segments[1] : ""), default: []].append(e)
        }
        self.index = index
    }

    static func indexKey(_ s: [Substring], second: Substring) -> String {
        "\(s.count)|\(s.first ?? "")|\(second)"
    }

    /// The registered endpoint for a request, or nil when the registry does not know it.
    public func lookup(method: String, normalizedPath: String) -> RegisteredEndpoint? {
        let s = PathNormalizer.segments(normalizedPath)
        let second = s.count > 1 ? s[1] : ""
        if let e = index[Self.indexKey(s, second: second)]?.first(where: { $0.matches(method: method, segments: s) }) { return e }
        return index[Self.indexKey(s, second: "*")]?.first { $0.matches(method: method, segments: s) }
    }

    /// The money class of a request. Every method of every route the SDKs know is registered; of the rest, a read
    /// (GET, HEAD) moves no money and anything else (POST, PUT, PATCH, DELETE …) is `.unpriced`: DELETE moves money
    /// too (a subscription cancelled with `invoice_now`).
    public func moneyClass(method: String, normalizedPath: String) -> MoneyClass {
        if let e = lookup(method: method, normalizedPath: normalizedPath) { return e.money }
        return method == "GET" || method == "HEAD" ? .movesNoMoney : .unpriced
    }

    /// The registry's `.unpriced` endpoints that an allowlist pattern opens (for key validation).
    public func unpricedEndpoints(openedBy pattern: EndpointPattern) -> [RegisteredEndpoint] {
        entries.filter { $0.money == .unpriced && pattern.matches(method: $0.method, normalizedPath: $0.examplePath) }
    }

    /// The credential endpoint an allowlist pattern names, if any. A pattern that ends in `**` is a broad grant and is
    /// accepted (the credential endpoints under it are still refused at request time); one that names the route — a
    /// literal path or `*` in its id segments — is refused when the key is created, so the tenant learns it early.
    public func credentialEndpoint(namedBy pattern: EndpointPattern) -> RegisteredEndpoint? {
        if case .anyRest? = pattern.segments.last { return nil }
        if let named = entries.first(where: { $0.money == .credential && pattern.matches(method: $0.method, normalizedPath: $0.examplePath) }) {
            return named
        }
        // A literal path (`GET /2010-04-01/Accounts/AC123.json`) is the registry's own route with a concrete id.
        let literal = pattern.segments.compactMap { if case .literal(let s) = $0 { s } else { nil } }
        guard literal.count == pattern.segments.count else { return nil }
        let path = "/" + literal.joined(separator: "/")
        let methods = pattern.method == "*" ? ["GET", "POST", "PUT", "PATCH", "DELETE"] : [pattern.method]
        return methods.lazy.compactMap { self.lookup(method: $0, normalizedPath: path) }.first { $0.money == .credential }
    }

    public static func of(_ vendor: Vendor) -> EndpointRegistry {
        switch vendor {
        case .stripe: stripe
        case .twilio: twilio
        case .resend: resend
        }
    }
}
