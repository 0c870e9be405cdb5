import Foundation
import KeybrakeCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
@testable import Proxy
import XCTest

/// The upstream pool against a real TLS + HTTP/2 server that allows 2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS):
/// a custom CA is trusted through the settings, and a burst larger than one connection's streams is in flight all at once
/// over several connections instead of queueing behind one (what AsyncHTTPClient alone does).
final class UpstreamHTTP2Tests: XCTestCase {
    func settings(trustingCA: Bool) throws -> UpstreamSettings {
        var s = UpstreamSettings()
        s.streamsPerConnection = 2
        s.maxInFlight = 6
        if trustingCA { s.extraTrustRoots = [try NIOSSLCertificate(bytes: Array(Self.caPEM.utf8), format: .pem)] }
        return s
    }

    func testABurstLargerThanOneConnectionsStreamsIsInFlightAtOnceOverSeveralConnections() async throws {
        let server = try await HeldHTTP2Server.start(maxStreams: 2, releaseAt: 6, certificate: Self.serverPEM, key: Self.serverKey)
        let forwarder = Forwarder(timeout: .seconds(30), maxResponseBody: 1 << 20, settings: try settings(trustingCA: true))
        let url = "https://127.0.0.1:\(server.port)/v1/customers/cus_1"
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<6 {
                group.addTask { try await forwarder.send(vendor: .stripe, method: "GET", url: url, headers: [], body: nil, logger: Logger(label: "t")).status }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        XCTAssertEqual(statuses, [200, 200, 200, 200, 200, 200])
        XCTAssertEqual(server.maxActive, 6, "all six were at the vendor at once (the server holds them until six arrive)")
        XCTAssertGreaterThanOrEqual(server.connections, 3, "2 streams per connection: at least three connections")
        XCTAssertEqual(server.http2Requests, 6, "every request went over HTTP/2")
        XCTAssertEqual(forwarder.load(.stripe).shards, 3)
        XCTAssertEqual(forwarder.load(.stripe).inFlight, 0)
        try await forwarder.shutdown()
        try await server.stop()
    }

    func testWithoutTheCABundleTheHandshakeFailsAndNothingIsSent() async throws {
        let server = try await HeldHTTP2Server.start(maxStreams: 2, releaseAt: 1, certificate: Self.serverPEM, key: Self.serverKey)
        var s = try settings(trustingCA: false)
        s.connectTimeout = .seconds(1)
        let forwarder = Forwarder(timeout: .seconds(10), maxResponseBody: 1 << 20, settings: s)
        do {
            _ = try await forwarder.send(vendor: .stripe, method: "GET", url: "https://127.0.0.1:\(server.port)/v1/customers/cus_1", headers: [],
                                        body: nil, logger: Logger(label: "t"))
            XCTFail("an untrusted certificate was accepted")
        } catch {
            guard case .notSent = error else { return XCTFail("expected notSent, got \(error)") }
        }
        XCTAssertEqual(server.http2Requests, 0)
        try await forwarder.shutdown()
        try await server.stop()
    }

    /// An answer opened for streaming and then dropped unread (the agent went away) still gives its slot back.
    func testAStreamedAnswerDroppedUnreadGivesItsSlotBack() async throws {
        let server = try await HeldHTTP2Server.start(maxStreams: 2, releaseAt: 1, certificate: Self.serverPEM, key: Self.serverKey)
        let forwarder = Forwarder(timeout: .seconds(30), maxResponseBody: 1 << 20, settings: try settings(trustingCA: true))
        let url = "https://127.0.0.1:\(server.port)/v1/customers/cus_1"
        do {
            let head = try await forwarder.open(vendor: .stripe, method: "GET", url: url, headers: [], body: nil, logger: Logger(label: "t"))
            XCTAssertEqual(head.status, 200)
            XCTAssertEqual(forwarder.load(.stripe).inFlight, 1, "the slot is held while the body may still come")
            _ = head.responseBody()
        }
        XCTAssertEqual(forwarder.load(.stripe).inFlight, 0)
        try await forwarder.shutdown()
        try await server.stop()
    }

    static let caPEM = """
-----BEGIN CERTIFICATE-----
MIIBnTCCAUOgAwIBAgIUHYouJVyqy6crGTEKu9HlPKMYfccwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQS2V5YnJha2UgdGVzdCBDQTAgFw0yNjExMjkwNjQ0MzlaGA8y
MTI2MTEwNTA2NDQzOVowGzEZMBcGA1UEAwwQS2V5YnJha2UgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABFF/TVYK0CLtkDHRL5z4DnzgfDVyGAtNvaIg
Qr8Hhr5w1o37gjZPCuoEMSh8JDSiSXgjshI/Xe0k3d0sL3O6Qm2jYzBhMB0GA1Ud
DgQWBBShB7M6Rx8M5wDibA7/w3xYQwIYdDAfBgNVHSMEGDAWgBShB7M6Rx8M5wDi
bA7/w3xYQwIYdDAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwICBDAKBggq
hkjOPQQDAgNIADBFAiEA+G0D1t7G8Az2kgD7KLt8vGcnyyUaHai3GosSnVJ4rA4C
ICLnTF2aWQjvfBmiNPoiz4DV8yx7cAGSSbZDlyEQ77Gi
-----END CERTIFICATE-----
"""
    static let serverPEM = """
-----BEGIN CERTIFICATE-----
MIIBsTCCAVegAwIBAgIUMKOKDl9mcx7Mk0ty7a7u090jLBYwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQS2V5YnJha2UgdGVzdCBDQTAgFw0yNjExMjkwNjQ0MzlaGA8y
MTI2MTEwNTA2NDQzOVowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0C
AQYIKoZIzj0DAQcDQgAEjoRI9x+keI9Ln7d1PD8j8X4FCelUFxVFkbumdIpx/w0M
FxLoW0UmhjCcHLsMV5yVr4VxReGOUgfqz0g08O+wsqN+MHwwGgYDVR0RBBMwEYcE
fwAAAYIJbG9jYWxob3N0MAkGA1UdEwQCMAAwEwYDVR0lBAwwCgYIKwYBBQUHAwEw
HQYDVR0OBBYEFJY3mtYkANJ2+/GXJDD7FIpOFQeUMB8GA1UdIwQYMBaAFKEHszpH
HwznAOJsDv/DfFhDAhh0MAoGCCqGSM49BAMCA0gAMEUCIQCimZZUqnJcOmjiG0hC
kq1PLqj+EUYKdYBB6bxvIuL9KQIgaSky2waGBn+dt13QdubZqx86kkRZS2tP7i/Y
5lclXsU=
-----END CERTIFICATE-----
"""
    static let serverKey = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgZTyHWdzQyLHQBgSs
W/eMWaNp8oLrAsy74+kLp9fHzKihRANCAASOhEj3H6R4j0uft3U8PyPxfgUJ6VQX
FUWRu6Z0inH/DQwXEuhbRSaGMJwcuwxXnJWvhXFF4Y5SB+rPSDTw77Cy
-----END PRIVATE KEY-----
"""
}

/// A TLS server speaking only HTTP/2 that holds every request until `releaseAt` are in flight at once (or 10 s pass),
/// then answers them all `200 {}`. Counts connections, requests and the most requests in flight at once.
final class HeldHTTP2Server: Sendable {
    struct State {
        var connections = 0
        var requests = 0
        var active = 0
        var maxActive = 0
        var held: [@Sendable () -> Void] = []
        var released = false
    }
    let state = NIOLockedValueBox(State())
    let releaseAt: Int
    private let channel = NIOLockedValueBox<Channel?>(nil)

    init(releaseAt: Int) { self.releaseAt = releaseAt }

    var port: Int { channel.withLockedValue { $0?.localAddress?.port ?? 0 } }
    var connections: Int { state.withLockedValue { $0.connections } }
    var http2Requests: Int { state.withLockedValue { $0.requests } }
    var maxActive: Int { state.withLockedValue { $0.maxActive } }

    static func start(maxStreams: Int, releaseAt: Int, certificate: String, key: String) async throws -> HeldHTTP2Server {
        let server = HeldHTTP2Server(releaseAt: releaseAt)
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(certificate.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem)))
        tls.applicationProtocols = ["h2"]
        let context = try NIOSSLContext(configuration: tls)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                server.state.withLockedValue { $0.connections += 1 }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                }.flatMap {
                    channel.configureHTTP2Pipeline(mode: .server, initialLocalSettings: [HTTP2Setting(parameter: .maxConcurrentStreams, value: maxStreams)],
                                                   inboundStreamInitializer: { stream in
                        stream.eventLoop.makeCompletedFuture {
                            try stream.pipeline.syncOperations.addHandlers([HTTP2FramePayloadToHTTP1ServerCodec(), HeldHandler(server: server)])
                        }
                    }).map { _ in }
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        server.channel.withLockedValue { $0 = channel }
        MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .seconds(10)) { server.releaseAll() }
        return server
    }

    func arrived(_ respond: @escaping @Sendable () -> Void) {
        let run: [@Sendable () -> Void] = state.withLockedValue { s in
            s.requests += 1
            s.active += 1
            s.maxActive = max(s.maxActive, s.active)
            if s.released { return [respond] }
            s.held.append(respond)
            if s.held.count >= releaseAt {
                s.released = true
                defer { s.held = [] }
                return s.held
            }
            return []
        }
        run.forEach { $0() }
    }

    func answered() { state.withLockedValue { $0.active -= 1 } }

    func releaseAll() {
        let run = state.withLockedValue { s in
            s.released = true
            defer { s.held = [] }
            return s.held
        }
        run.forEach { $0() }
    }

    func stop() async throws {
        releaseAll()
        try await channel.withLockedValue { $0 }?.close()
    }
}

final class HeldHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let server: HeldHTTP2Server

    init(server: HeldHTTP2Server) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        let bound = NIOLoopBound((context, self), eventLoop: context.eventLoop)
        let server = self.server
        let loop = context.eventLoop
        server.arrived {
            loop.execute {
                let (context, handler) = bound.value
                var headers = HTTPHeaders()
                headers.add(name: "content-type", value: "application/json")
                headers.add(name: "content-length", value: "2")
                server.answered()
                context.write(handler.wrapOutboundOut(.head(HTTPResponseHead(version: .http2, status: .ok, headers: headers))), promise: nil)
                context.write(handler.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "{}")))), promise: nil)
                context.writeAndFlush(handler.wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}
