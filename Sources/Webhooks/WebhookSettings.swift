/// Delivery settings (README "Configuration"): `KEYBRAKE_WEBHOOK_ALLOW_PRIVATE`, `KEYBRAKE_WEBHOOK_POLL_MS`.
public struct WebhookSettings: Sendable, Equatable {
    /// http and private addresses allowed (tests, on-prem).
    public var allowPrivate = false
    /// Whether this process runs the delivery service (tests that drive a dispatcher themselves turn it off).
    public var delivers = true
    /// How often each replica looks for due deliveries.
    public var pollInterval: Duration = .seconds(1)
    /// One attempt's bound, connect to last byte (DESIGN §14: 15 s).
    public var timeout: Duration = .seconds(15)
    /// Due deliveries one replica takes at a time; each is posted on its own, so a slow receiver holds only its own.
    public var batchSize = 32
    public init() {}
}
