import AsyncHTTPClient
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One shared AsyncHTTPClient for every upstream call, with a pool sized for proxy traffic.
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
    }

    let client: HTTPClient
    let timeout: Duration
    let maxResponseBody: Int

    public init(timeout: Duration, connectionsPerHost: Int, maxResponseBody: Int) {
        var config = HTTPClient.Configuration()
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connectionsPerHost)
        config.timeout = .init(connect: .seconds(5))
        config.redirectConfiguration = .disallow
        config.decompression = .disabled
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        self.timeout = timeout
        self.maxResponseBody = maxResponseBody
    }

    public func shutdown() async throws { try await client.shutdown() }

    /// Sends the request and collects the response. Hop-by-hop headers are the caller's to strip.
    public func send(method: String, url: String, headers: [(String, String)], body: ByteBuffer?, logger: Logger) async throws(Failure) -> UpstreamResponse {
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        var nioHeaders = HTTPHeaders()
        for (name, value) in headers { nioHeaders.add(name: name, value: value) }
        request.headers = nioHeaders
        if let body, body.readableBytes > 0 || method != "GET" {
            request.body = .bytes(body)
        }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        do {
            let response = try await client.execute(request, deadline: deadline, logger: logger)
            let collected = try await response.body.collect(upTo: maxResponseBody)
            return UpstreamResponse(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: collected)
        } catch let error as HTTPClientError where error == .connectTimeout {
            throw .notSent("connect timeout")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw .timeout
        } catch where Self.neverConnected(error) {
            logger.warning("upstream unreachable", metadata: ["error": "\(String(describing: type(of: error)))"])
            throw .notSent(String(describing: error))
        } catch {
            logger.warning("upstream connection failed", metadata: ["error": "\(String(describing: type(of: error)))"])
            throw .connection(String(describing: error))
        }
    }

    /// Errors raised before a connection existed, so before any byte of the request left: the vendor cannot have
    /// acted on it. Everything else (a reset after sending, a read timeout) leaves the outcome unknown.
    static func neverConnected(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let channel = error as? ChannelError, case .connectTimeout = channel { return true }
        if let io = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(io.errnoCode) { return true }
        if error is NIOSSLError { return true }
        return false
    }

    /// Hop-by-hop and framing headers never cross the proxy (RFC 9110 §7.6.1).
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
        "transfer-encoding", "upgrade", "host", "content-length",
    ]
}
