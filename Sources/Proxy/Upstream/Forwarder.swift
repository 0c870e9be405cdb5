import AsyncHTTPClient
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Every upstream call goes through here: one `UpstreamPool` per vendor (a bounded budget of requests in flight,
/// spread over as many HTTP/2 or HTTP/1.1 connections as the load needs), the egress settings applied to each.
public final class Forwarder: Sendable {
    public struct UpstreamResponse: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: ByteBuffer

        public func header(_ name: String) -> String? {
            headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
        }
    }

    public enum Failure: Error, Sendable {
        /// No complete response: timeout, refused or dropped connection. The request may or may not have been acted on.
        case timeout
        case connection(String)
        /// No connection was made (refused, DNS, TLS handshake, connect timeout): nothing reached the vendor.
        case notSent(String)
        /// The vendor's connection budget stayed full for the whole bounded wait: nothing was sent.
        case busy
    }

    let settings: UpstreamSettings
    let timeout: Duration
    let maxResponseBody: Int
    private let pools = NIOLockedValueBox([Vendor: UpstreamPool]())

    public init(timeout: Duration, maxResponseBody: Int, settings: UpstreamSettings = UpstreamSettings()) {
        self.settings = settings
        self.timeout = timeout
        self.maxResponseBody = maxResponseBody
    }

    public func shutdown() async throws {
        let all = pools.withLockedValue { Array($0.values) }
        for pool in all { try await pool.shutdown() }
    }

    /// Requests in flight and waiting for `vendor`, and the pool's shards (each one HTTP/2 connection, or a group
    /// of HTTP/1.1 connections).
    public func load(_ vendor: Vendor) -> (inFlight: Int, waiting: Int, shards: Int) {
        pools.withLockedValue { $0[vendor] }?.snapshot ?? (0, 0, 0)
    }

    func pool(_ vendor: Vendor, url: URL) -> UpstreamPool {
        pools.withLockedValue { pools in
            if let pool = pools[vendor] { return pool }
            let limit = settings.maxInFlight(for: vendor)
            let config = clientConfiguration(for: url, shardSize: min(limit, settings.streamsPerConnection))
            let pool = UpstreamPool(limit: limit, perShard: settings.streamsPerConnection, busyWait: settings.busyWait,
                                    maxWaiting: settings.maxWaiting ?? limit) {
                HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
            }
            pools[vendor] = pool
            return pool
        }
    }

    func clientConfiguration(for url: URL, shardSize: Int) -> HTTPClient.Configuration {
        var config = HTTPClient.Configuration()
        config.connectionPool = .init(idleTimeout: Self.timeAmount(settings.idleTimeout), concurrentHTTP1ConnectionsPerHostSoftLimit: shardSize)
        // Not `preWarmedHTTP1ConnectionCount`: with it, AsyncHTTPClient 1.37 left a second request waiting for a
        // connection until `getConnectionFromPoolTimeout` (UpstreamBudgetTests found it with a budget of 2).
        config.timeout = .init(connect: Self.timeAmount(settings.connectTimeout))
        config.redirectConfiguration = .disallow
        config.decompression = .disabled
        config.httpVersion = .automatic
        if !settings.extraTrustRoots.isEmpty {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.additionalTrustRoots = [.certificates(settings.extraTrustRoots)]
            config.tlsConfiguration = tls
        }
        config.proxy = settings.egressProxy.clientProxy(for: url)
        return config
    }

    /// Sends the request and collects the response (bounded by `maxResponseBody`) into one buffer, which the caller
    /// hands on to the agent and, for a stored answer, to the idempotency record. For answers that must be read
    /// whole: money-moving ones (settlement, replay records) and lookups. Hop-by-hop headers are the caller's to strip.
    public func send(vendor: Vendor, method: String, url: String, headers: [(String, String)], body: ByteBuffer?, logger: Logger) async throws(Failure) -> UpstreamResponse {
        let (response, slot) = try await start(vendor: vendor, method: method, url: url, headers: headers, body: body, logger: logger)
        defer { slot.release() }
        do {
            let collected = try await response.body.collect(upTo: maxResponseBody)
            return UpstreamResponse(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: collected)
        } catch {
            throw Self.failure(error, logger: logger)
        }
    }

    /// An answer whose body is still arriving: it streams to the agent chunk by chunk (NIO's backpressure bounds the
    /// memory), and the request keeps its slot in the vendor's budget until the body has been read to the end,
    /// failed, or been dropped.
    public struct StreamedResponse: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        let body: HTTPClientResponse.Body
        let slot: SlotRelease

        /// The body for Hummingbird's response, with the upstream's length when it sent one, the tenant's secret
        /// masked wherever it appears (the mask keeps the length).
        public func responseBody() -> ResponseBody { responseBody(masking: SecretMask(secrets: [], fields: [])) }

        func responseBody(masking mask: SecretMask) -> ResponseBody {
            let body = self.body, slot = self.slot
            let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) }
            return ResponseBody(contentLength: length) { writer in
                defer { slot.release() }
                // A small answer of known length is read whole, so its secret fields can be masked too.
                if let length, length <= SecretMask.wholeAnswerLimit {
                    var whole = ByteBuffer()
                    for try await var chunk in body { whole.writeBuffer(&chunk) }
                    try await writer.write(mask.masked(whole) ?? whole)
                    try await writer.finish(nil)
                    return
                }
                var stream = SecretMask.Stream(mask: mask)
                for try await chunk in body { try await writer.write(stream.next(chunk)) }
                let rest = stream.finish()
                if rest.readableBytes > 0 { try await writer.write(rest) }
                try await writer.finish(nil)
            }
        }
    }

    /// Sends the request and returns as soon as the answer's head has arrived; for answers nothing needs to read.
    public func open(vendor: Vendor, method: String, url: String, headers: [(String, String)], body: ByteBuffer?, logger: Logger) async throws(Failure) -> StreamedResponse {
        let (response, slot) = try await start(vendor: vendor, method: method, url: url, headers: headers, body: body, logger: logger)
        return StreamedResponse(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: response.body, slot: slot)
    }

    /// Takes a slot in the vendor's budget (or fails `.busy`), sends, and waits for the answer's head.
    private func start(vendor: Vendor, method: String, url: String, headers: [(String, String)], body: ByteBuffer?, logger: Logger) async throws(Failure) -> (HTTPClientResponse, SlotRelease) {
        guard let parsed = URL(string: url) else { throw .notSent("invalid upstream URL") }
        let pool = pool(vendor, url: parsed)
        // Counted in keybrake_proxy_requests_total{code="upstream_busy"} by the caller's audit step.
        guard let lease = await pool.acquire() else { throw .busy }
        let slot = SlotRelease(pool: pool, lease: lease)
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        var nioHeaders = HTTPHeaders()
        nioHeaders.reserveCapacity(headers.count)
        for (name, value) in headers { nioHeaders.add(name: name, value: value) }
        request.headers = nioHeaders
        if let body, body.readableBytes > 0 || method != "GET" {
            request.body = .bytes(body)
        }
        let deadline = NIODeadline.now() + Self.timeAmount(timeout)
        do {
            return (try await lease.client.execute(request, deadline: deadline, logger: logger), slot)
        } catch {
            slot.release()
            throw Self.failure(error, logger: logger)
        }
    }

    static func failure(_ error: any Error, logger: Logger) -> Failure {
        if let client = error as? HTTPClientError, client == .connectTimeout { return .notSent("connect timeout") }
        if let client = error as? HTTPClientError, client == .deadlineExceeded || client == .readTimeout { return .timeout }
        if neverConnected(error) {
            logger.warning("upstream unreachable", metadata: ["error": "\(String(describing: type(of: error)))"])
            return .notSent(String(describing: error))
        }
        logger.warning("upstream connection failed", metadata: ["error": "\(String(describing: type(of: error)))"])
        return .connection(String(describing: error))
    }

    static func timeAmount(_ d: Duration) -> TimeAmount {
        .nanoseconds(d.nanoseconds)
    }

    /// Errors raised before a connection existed, so before any byte of the request left: the vendor cannot have
    /// acted on it. Everything else (a reset after sending, a read timeout) leaves the outcome unknown.
    static func neverConnected(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let channel = error as? ChannelError, case .connectTimeout = channel { return true }
        if let io = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(io.errnoCode) { return true }
        if error is NIOSSLError { return true }
        if let client = error as? HTTPClientError, client == .proxyAuthenticationRequired || client == .invalidProxyResponse
            || client == .httpProxyHandshakeTimeout || client == .socksHandshakeTimeout { return true }
        return false
    }

    /// Hop-by-hop and framing headers never cross the proxy (RFC 9110 §7.6.1).
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
        "transfer-encoding", "upgrade", "host", "content-length",
    ]
}

/// Gives a request's slot back to its vendor's budget exactly once: at the end of its body, or when the answer is
/// dropped unread (deinit), whichever comes first.
final class SlotRelease: Sendable {
    let pool: UpstreamPool
    let lease: UpstreamPool.Lease
    private let released = NIOLockedValueBox(false)

    init(pool: UpstreamPool, lease: UpstreamPool.Lease) {
        self.pool = pool
        self.lease = lease
    }

    func release() {
        let first = released.withLockedValue { done in
            defer { done = true }
            return !done
        }
        if first { pool.release(lease) }
    }

    deinit { release() }
}
