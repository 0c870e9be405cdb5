import Foundation

/// What a vault key may do. USD amounts are integer micro-dollars; nil means "no limit".
public struct Policy: Sendable, Equatable {
    public var vendor: Vendor
    public var label: String
    /// Pattern texts as the tenant wrote them; `endpointPatterns` holds them parsed.
    public var allowedEndpoints: [String]
    public var dailyCap: MicroUSD?
    public var monthlyCap: MicroUSD?
    public var maxRequest: MicroUSD?
    /// Lifetime cap: everything the key (and its children) ever spends.
    public var totalCap: MicroUSD?
    public var expiresAt: Date?
    public var rateLimitPerMinute: Int?
    public var autoIdempotency: Bool
    public var duplicateWindowSeconds: Int
    /// IANA zone that defines the key's "day" and "month" for caps.
    public var timezone: String
    public var allowedStripeAccounts: [String]
    /// Percentages of each cap at which `key.spend.threshold_crossed` fires (DESIGN §14); nil: the default
    /// (`defaultAlertThresholds`). Child keys inherit their parent's.
    public var alertThresholds: [Int]?

    public static let defaultAlertThresholds = [50, 80, 100]
    public static let maxAlertThresholds = 10
    public static let defaultDuplicateWindowSeconds = 86_400
    public static let maxDuplicateWindowSeconds = 7 * 86_400
    public static let maxLabelLength = 100
    public static let maxEndpoints = 100

    public init(
        vendor: Vendor, label: String, allowedEndpoints: [String], dailyCap: MicroUSD? = nil,
        monthlyCap: MicroUSD? = nil, maxRequest: MicroUSD? = nil, totalCap: MicroUSD? = nil, expiresAt: Date? = nil,
        rateLimitPerMinute: Int? = nil, autoIdempotency: Bool = true,
        duplicateWindowSeconds: Int = Policy.defaultDuplicateWindowSeconds, timezone: String = "UTC",
        allowedStripeAccounts: [String] = [], alertThresholds: [Int]? = nil
    ) {
        self.alertThresholds = alertThresholds
        self.vendor = vendor
        self.label = label
        self.allowedEndpoints = allowedEndpoints
        self.dailyCap = dailyCap
        self.monthlyCap = monthlyCap
        self.maxRequest = maxRequest
        self.totalCap = totalCap
        self.expiresAt = expiresAt
        self.rateLimitPerMinute = rateLimitPerMinute
        self.autoIdempotency = autoIdempotency
        self.duplicateWindowSeconds = duplicateWindowSeconds
        self.timezone = timezone
        self.allowedStripeAccounts = allowedStripeAccounts
    }

    /// A key with no USD limit at all; listings flag it so nobody mistakes it for a capped one.
    public var isUncapped: Bool { dailyCap == nil && monthlyCap == nil && maxRequest == nil && totalCap == nil }

    /// Parsed allowlist; only valid after `validate` succeeded.
    public var endpointPatterns: [EndpointPattern] {
        allowedEndpoints.compactMap { try? EndpointPattern.parse($0, vendor: vendor) }
    }

    /// Checks every rule, naming the offending field. `now` decides whether `expires_at` is in the past;
    /// nil skips that check (an edit that leaves an old expiry untouched).
    public func validate(now: Date?) throws(KeybrakeError) {
        let trimmedLabel = label.trimmingWhitespace()
        guard !trimmedLabel.isEmpty, label.count <= Policy.maxLabelLength else {
            throw .invalidRequest("label must be 1–\(Policy.maxLabelLength) characters.", field: "label")
        }
        if let refusal = DisplayText.refusal(label, field: "label") { throw refusal }
        guard !allowedEndpoints.isEmpty else {
            throw .invalidRequest("allowed_endpoints must list at least one endpoint, e.g. \"POST /v1/charges\".", field: "allowed_endpoints")
        }
        guard allowedEndpoints.count <= Policy.maxEndpoints else {
            throw .invalidRequest("allowed_endpoints may hold at most \(Policy.maxEndpoints) entries.", field: "allowed_endpoints")
        }
        for (i, entry) in allowedEndpoints.enumerated() {
            do {
                _ = try EndpointPattern.parse(entry, vendor: vendor)
            } catch {
                throw .invalidRequest("allowed_endpoints[\(i)]: \(error.reason).", field: "allowed_endpoints")
            }
        }
        // No vault key may name an endpoint that reveals or creates a vendor credential (DESIGN §7); under a broad
        // `**` grant such endpoints are refused at request time.
        let registry = EndpointRegistry.of(vendor)
        for pattern in endpointPatterns {
            if let endpoint = registry.credentialEndpoint(namedBy: pattern) {
                throw .invalidRequest("allowed_endpoints: '\(pattern.source)' opens \(endpoint), which Keybrake never forwards for a vault key: \(endpoint.reason ?? "it reveals a vendor credential"). Use the vendor's dashboard for it.", field: "allowed_endpoints")
            }
        }
        // A capped key may not open an endpoint that moves money Keybrake cannot price (DESIGN §7): its cap would not
        // see that money. (An endpoint the registry does not know is refused at request time instead.)
        if !isUncapped {
            for pattern in endpointPatterns {
                if let endpoint = registry.unpricedEndpoints(openedBy: pattern).first {
                    throw .invalidRequest("allowed_endpoints: '\(pattern.source)' opens \(endpoint), which moves money Keybrake cannot price before it moves (\(endpoint.reason ?? "unpriced")); a key with caps cannot allow it. Allow narrower endpoints, or use a key without caps for it.", field: "allowed_endpoints")
                }
            }
        }
        for (field, cap) in [("daily_usd_cap", dailyCap), ("monthly_usd_cap", monthlyCap), ("max_request_usd", maxRequest), ("total_usd_cap", totalCap)] {
            if let cap, cap.micros <= 0 {
                throw .invalidRequest("\(field) must be greater than 0 (omit it or send null for no limit).", field: field)
            }
        }
        if let daily = dailyCap, let monthly = monthlyCap, daily > monthly {
            throw .invalidRequest("daily_usd_cap (\(daily)) cannot exceed monthly_usd_cap (\(monthly)).", field: "daily_usd_cap")
        }
        if let expiresAt, let now, expiresAt <= now {
            throw .invalidRequest("expires_at must be in the future.", field: "expires_at")
        }
        if let rate = rateLimitPerMinute, !(1...1_000_000).contains(rate) {
            throw .invalidRequest("rate_limit_per_minute must be between 1 and 1000000.", field: "rate_limit_per_minute")
        }
        guard (0...Policy.maxDuplicateWindowSeconds).contains(duplicateWindowSeconds) else {
            throw .invalidRequest("duplicate_window_seconds must be between 0 (off) and \(Policy.maxDuplicateWindowSeconds).", field: "duplicate_window_seconds")
        }
        guard TimeZone(identifier: timezone) != nil else {
            throw .invalidRequest("timezone '\(timezone)' is not an IANA time zone such as UTC or America/New_York.", field: "timezone")
        }
        if let thresholds = alertThresholds {
            guard thresholds.count <= Policy.maxAlertThresholds, thresholds.allSatisfy({ (1...100).contains($0) }),
                  Set(thresholds).count == thresholds.count else {
                throw .invalidRequest("alert_thresholds must list at most \(Policy.maxAlertThresholds) different whole percentages between 1 and 100, e.g. [50, 80, 100].", field: "alert_thresholds")
            }
        }
        if !allowedStripeAccounts.isEmpty {
            guard vendor == .stripe else {
                throw .invalidRequest("allowed_stripe_accounts applies to stripe keys only.", field: "allowed_stripe_accounts")
            }
            for account in allowedStripeAccounts where !(account.hasPrefix("acct_") && account.count > 5 && account.count <= 64
                && Identifier.isBase62(account.dropFirst(5))) {
                throw .invalidRequest("'\(account)' is not a Stripe account id (acct_…).", field: "allowed_stripe_accounts")
            }
        }
    }
}
