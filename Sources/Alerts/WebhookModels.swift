import Foundation

/// The event types a webhook endpoint can subscribe to (`ping` is sent only by POST …/{id}/test).
public enum EventType {
    public static let thresholdCrossed = "key.spend.threshold_crossed"
    public static let capReached = "key.cap.reached"
    public static let outcomeUnknown = "request.outcome_unknown"
    public static let keyRevoked = "key.revoked"
    public static let keyExpiring = "key.expiring"
    public static let ping = "ping"
    public static let subscribable: [String] = [thresholdCrossed, capReached, outcomeUnknown, keyRevoked, keyExpiring]
}

public struct WebhookEndpoint: Sendable, Equatable {
    public var id: String
    public var tenantId: String
    public var url: String
    public var description: String?
    /// Empty: every type.
    public var events: [String]
    public var format: String
    public var enabled: Bool
    public var disabledReason: String?
    public var failingSince: Date?
    /// While a rotation's previous secret still signs.
    public var previousSecretExpiresAt: Date?
    public var createdAt: Date
    public var updatedAt: Date
}

public struct StoredEvent: Sendable, Equatable {
    public var id: String
    public var type: String
    public var keyId: String?
    public var period: String?
    /// The `data` object, as JSON text.
    public var data: String
    public var createdAt: Date
}

public struct WebhookDelivery: Sendable, Equatable {
    public var id: String
    public var endpointId: String
    public var eventId: String
    public var eventType: String
    public var status: String
    public var attempts: Int
    public var nextAttemptAt: Date?
    public var lastAttemptAt: Date?
    public var lastStatus: Int?
    public var lastError: String?
    public var lastLatencyMs: Int?
    public var createdAt: Date
}

/// Filters of GET /v1/events.
public struct EventFilter: Sendable, Equatable {
    public var type: String?
    public var keyId: String?
    public var from: Date?
    public var to: Date?
    public init(type: String? = nil, keyId: String? = nil, from: Date? = nil, to: Date? = nil) {
        self.type = type
        self.keyId = keyId
        self.from = from
        self.to = to
    }
}
