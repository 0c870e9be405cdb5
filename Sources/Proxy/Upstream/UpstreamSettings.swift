import Foundation
import KeybrakeCore
import NIOSSL

/// How Keybrake talks to the vendors: the connection budget per vendor, how long a request may wait for it, how
/// connections are kept, and the egress path (custom CA bundle, outbound proxy). README "Upstream connections"
/// gives each default's reason.
public struct UpstreamSettings: Sendable {
    /// Requests in flight to one vendor from this replica. Over HTTP/1.1 each is a connection; over HTTP/2 they
    /// share `⌈n / streamsPerConnection⌉` connections. 1,024 at Stripe's ~200–500 ms is 2,000–5,000 req/s per
    /// vendor, more than a 2-core replica can process; past it requests wait `busyWait`, then get 503 `upstream_busy`.
    public var maxInFlight: Int = 1024
    /// Per-vendor overrides of `maxInFlight` (`KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT_STRIPE`, …).
    public var maxInFlightByVendor: [Vendor: Int] = [:]
    /// Streams Keybrake puts on one HTTP/2 connection before it opens another: RFC 9113 §6.5.2 recommends servers
    /// allow at least 100, so 100 fits every vendor that follows it (nginx allows 128, Go's net/http 250).
    /// Over HTTP/1.1 it is the number of connections one shard of the pool holds.
    public var streamsPerConnection: Int = 100
    /// How long a request waits for a free slot in its vendor's budget before 503 `upstream_busy` (the
    /// reservation, already held in Postgres, is released). Short: while it waits it holds cap headroom.
    public var busyWait: Duration = .seconds(1)
    /// Requests allowed to wait at once per vendor (the queue is bounded in time and in length).
    public var maxWaiting: Int? = nil
    /// Idle connections are closed after this: below the 60 s idle timeout of common load balancers (AWS ALB,
    /// GCP), so Keybrake closes first instead of reusing a connection the vendor is closing.
    public var idleTimeout: Duration = .seconds(50)
    public var connectTimeout: Duration = .seconds(5)
    /// Extra certificate authorities trusted for upstream TLS, on top of the system's (`KEYBRAKE_UPSTREAM_CA_FILE`).
    public var extraTrustRoots: [NIOSSLCertificate] = []
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`.
    public var egressProxy = EgressProxy()

    public init() {}

    public func maxInFlight(for vendor: Vendor) -> Int { maxInFlightByVendor[vendor] ?? maxInFlight }

    /// Reads a PEM bundle of one or more certificates; throws a message naming the file, never its contents.
    public static func loadCABundle(path: String) throws -> [NIOSSLCertificate] {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw SettingsError(description: "KEYBRAKE_UPSTREAM_CA_FILE \(path) cannot be read")
        }
        let certificates: [NIOSSLCertificate]
        do { certificates = try NIOSSLCertificate.fromPEMFile(path) } catch {
            throw SettingsError(description: "KEYBRAKE_UPSTREAM_CA_FILE \(path) is not a PEM certificate bundle")
        }
        guard !certificates.isEmpty else { throw SettingsError(description: "KEYBRAKE_UPSTREAM_CA_FILE \(path) holds no certificate") }
        return certificates
    }

    public struct SettingsError: Error, CustomStringConvertible {
        public let description: String
    }
}
