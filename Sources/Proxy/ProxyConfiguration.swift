import Foundation
import KeybrakeCore

/// Data-plane settings (DESIGN §3, §7).
public struct ProxyConfiguration: Sendable {
    /// Base URL per vendor, without trailing slash.
    public var upstreams: [Vendor: String]
    public var upstreamTimeout: Duration = .seconds(30)
    /// Added to the upstream timeout to make a request's lease: how long its in-flight records and held reservation
    /// outlive it if its replica dies, before any replica turns them into an unknown outcome (DESIGN §7 Leases).
    public var leaseMargin: Duration = .seconds(30)
    /// How often each replica sweeps for expired leases.
    public var leaseSweepInterval: Duration = .seconds(5)
    /// The lease of a request's in-flight records: as long as the request can live.
    public var lease: Duration { upstreamTimeout + leaseMargin }
    public var freeMonthlyRequests: Int = 1000
    /// How long an identical request waits for one in flight before 409 (DESIGN §7: 10 s).
    public var inFlightWait: Duration = .seconds(10)
    public var idempotencyTTL: Duration = .seconds(86_400)
    public var maxRequestBody: Int = 1 << 20
    public var maxResponseBody: Int = 16 << 20
    public var fx: FXTable = .default
    public var twilio = TwilioPricer()
    public var resend = ResendPricer()
    /// Upstream connections: budget per vendor, bounded wait, keep-alive, CA bundle, outbound proxy.
    public var upstream = UpstreamSettings()
    /// Longest a request waits on Postgres before going upstream; past it: 503, nothing forwarded.
    public var databaseDeadline: Duration = .seconds(3)

    /// Request headers forwarded to every vendor beside its SDKs' own (lower-case; `KEYBRAKE_FORWARD_HEADERS`): a
    /// deployment's tracing header, a test's label. The vault key and `X-Keybrake-*` are never forwarded.
    public var extraForwardedHeaders: Set<String> = []

    public init(upstreams: [Vendor: String]) { self.upstreams = upstreams }
}
