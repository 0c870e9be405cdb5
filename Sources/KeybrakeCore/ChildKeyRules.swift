import Foundation

/// What a child key may be (DESIGN §9): every limit at most its parent's, never wider. The parent's own limits still
/// apply to the child's requests (its chain is checked on every request and in the reserve statement); these rules
/// make the child's policy say no more than it can do.
public enum ChildKeyRules {
    /// Defaults, both configurable (`KEYBRAKE_MAX_KEY_DEPTH`, `KEYBRAKE_MAX_CHILDREN_PER_KEY`).
    public static let defaultMaxDepth = 3
    public static let defaultMaxChildren = 10_000
    public static let defaultLifetimeSeconds = 3_600
    /// A child of a key without expiry still expires: a run does not last a quarter.
    public static let maxLifetimeSeconds = 90 * 86_400
    public static let maxRunIdLength = 200

    /// Checks `child` against `parent`, naming the first field that would widen the parent.
    public static func check(_ child: Policy, within parent: Policy) throws(KeybrakeError) {
        guard child.vendor == parent.vendor else {
            throw .invalidRequest("vendor is inherited from the parent key (\(parent.vendor.rawValue)).", field: "vendor")
        }
        if let outside = child.endpointPatterns.firstNotContained(in: parent.endpointPatterns) {
            throw .invalidRequest("allowed_endpoints: '\(outside.source)' is not inside the parent key's allowed_endpoints (\(parent.allowedEndpoints.joined(separator: ", "))); a child key may only narrow them.", field: "allowed_endpoints")
        }
        let caps: [(String, MicroUSD?, MicroUSD?)] = [
            ("daily_usd_cap", child.dailyCap, parent.dailyCap), ("monthly_usd_cap", child.monthlyCap, parent.monthlyCap),
            ("max_request_usd", child.maxRequest, parent.maxRequest), ("total_usd_cap", child.totalCap, parent.totalCap),
        ]
        for (field, mine, theirs) in caps {
            if let mine, let theirs, mine > theirs {
                throw .invalidRequest("\(field) (\(mine)) is above the parent key's (\(theirs)); a child key may only narrow it.", field: field)
            }
        }
        if let parentExpiry = parent.expiresAt {
            guard let expiry = child.expiresAt, expiry <= parentExpiry else {
                throw .invalidRequest("expires_in_seconds would outlive the parent key, which expires at \(ISO8601DateFormatter().string(from: parentExpiry)).", field: "expires_in_seconds")
            }
        }
        if child.duplicateWindowSeconds < parent.duplicateWindowSeconds {
            throw .invalidRequest("duplicate_window_seconds (\(child.duplicateWindowSeconds)) is shorter than the parent key's (\(parent.duplicateWindowSeconds)); a child key may only lengthen the duplicate guard.", field: "duplicate_window_seconds")
        }
        if let outside = child.allowedStripeAccounts.first(where: { !parent.allowedStripeAccounts.contains($0) }) {
            throw .invalidRequest("allowed_stripe_accounts: \(outside) is not one of the parent key's.", field: "allowed_stripe_accounts")
        }
        guard child.timezone == parent.timezone else {
            throw .invalidRequest("timezone is inherited from the parent key (\(parent.timezone)).", field: "timezone")
        }
        if let childRate = child.rateLimitPerMinute, let parentRate = parent.rateLimitPerMinute, childRate > parentRate {
            throw .invalidRequest("rate_limit_per_minute (\(childRate)) is above the parent key's (\(parentRate)).", field: "rate_limit_per_minute")
        }
        if parent.rateLimitPerMinute != nil, child.rateLimitPerMinute == nil {
            throw .invalidRequest("rate_limit_per_minute cannot be removed from a child of a rate-limited key.", field: "rate_limit_per_minute")
        }
        if child.autoIdempotency != parent.autoIdempotency, parent.autoIdempotency {
            throw .invalidRequest("auto_idempotency cannot be turned off on a child of a key that has it.", field: "auto_idempotency")
        }
    }
}

/// Bounds on the key tree (configurable; DESIGN §9).
public struct ChildLimits: Sendable {
    public var maxDepth: Int
    public var maxChildren: Int
    public init(maxDepth: Int = ChildKeyRules.defaultMaxDepth, maxChildren: Int = ChildKeyRules.defaultMaxChildren) {
        self.maxDepth = maxDepth
        self.maxChildren = maxChildren
    }
}
