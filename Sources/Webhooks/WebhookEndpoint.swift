import Foundation
import KeybrakeCore

/// A tenant's webhook endpoint (DESIGN §14). The signing secret is never part of it: it is shown once, at creation
/// and at rotation, and kept sealed in Postgres.
public struct WebhookEndpoint: Sendable, Equatable {
    public enum Format: String, Sendable, CaseIterable { case standard, slack }

    public var id: String
    public var tenantId: String
    public var url: String
    /// nil: every event type.
    public var events: [String]?
    public var description: String
    public var enabled: Bool
    public var format: Format
    /// Set after a rotation: until then the previous secret signs beside the new one.
    public var previousSecretExpiresAt: Date?
    /// The first failure of the current run of failures (nil once a delivery succeeds).
    public var failingSince: Date?
    /// Why Keybrake disabled the endpoint (nil when the tenant did, or it is enabled).
    public var disabledReason: String?
    public var createdAt: Date
    public var updatedAt: Date
}

/// The event types an endpoint may subscribe to.
public enum WebhookEventType {
    public static let all = ["key.spend.threshold_crossed", "key.cap.reached", "request.outcome_unknown", "key.revoked", "key.expiring", "ping"]
}

/// What the tenant sends when creating or changing an endpoint (nil: not given).
public struct EndpointChange: Sendable {
    public var url: String?
    public var events: [String]??
    public var description: String?
    public var enabled: Bool?
    public var format: WebhookEndpoint.Format?
    public init() {}
}

/// Where webhooks may go: https and a public address, unless `KEYBRAKE_WEBHOOK_ALLOW_PRIVATE=true` (tests,
/// on-prem). Checked when the endpoint is saved (a literal address, an obviously local name) and again at every
/// delivery, after resolving the name (DNS rebinding: a name that was public when saved may not be now).
public struct WebhookURLPolicy: Sendable {
    public var allowPrivate: Bool
    public static let maxLength = 2_000

    public init(allowPrivate: Bool) { self.allowPrivate = allowPrivate }

    /// The URL's host and port, or a refusal naming what is wrong.
    public func check(_ text: String) throws(KeybrakeError) -> (host: String, port: Int) {
        guard text.count <= Self.maxLength, let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(),
              let host = url.host, !host.isEmpty else {
            throw .invalidRequest("url must be an absolute URL such as https://example.com/keybrake-webhooks.", field: "url")
        }
        guard url.user == nil, url.password == nil else {
            throw .invalidRequest("url must not carry a user name or password.", field: "url")
        }
        guard scheme == "https" || (allowPrivate && scheme == "http") else {
            throw .invalidRequest("url must use https (webhooks carry your spend; http is only for on-prem set-ups with KEYBRAKE_WEBHOOK_ALLOW_PRIVATE=true).", field: "url")
        }
        guard url.fragment == nil else { throw .invalidRequest("url must not have a #fragment.", field: "url") }
        let bare = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        if !allowPrivate {
            let lower = bare.lowercased()
            if lower == "localhost" || lower.hasSuffix(".localhost") || lower.hasSuffix(".local") || lower.hasSuffix(".internal") || !lower.contains(".") && IPAddressRules.parse(lower) == nil {
                throw .invalidRequest("url must name a public host; '\(bare.prefix(100))' is a local name.", field: "url")
            }
            if let address = IPAddressRules.parse(bare), !IPAddressRules.isPublic(address) {
                throw .invalidRequest("url must be a public address; \(bare.prefix(100)) is private, loopback or reserved.", field: "url")
            }
        }
        return (bare, url.port ?? (scheme == "https" ? 443 : 80))
    }
}
