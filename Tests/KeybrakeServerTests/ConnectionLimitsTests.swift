#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HummingbirdTesting
import KeybrakeServer
import XCTest

/// Connection hygiene on a real listening server: a client that stalls in the middle of its headers is dropped after
/// the idle timeout, and oversized headers are refused, instead of holding a socket forever.
final class ConnectionLimitsTests: XCTestCase, @unchecked Sendable {
    /// Connects to 127.0.0.1:`port`, sends `bytes`, and reads until the server closes or `wait` passes.
    func exchange(port: Int, _ bytes: String, wait: Double) -> (closed: Bool, received: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return (false, "connect failed") }
        _ = bytes.withCString { send(fd, $0, strlen($0), 0) }
        var timeout = timeval(tv_sec: Int(wait), tv_usec: Int((wait - Double(Int(wait))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 { return (true, String(decoding: received, as: UTF8.self)) }   // orderly close
            if n < 0 { return (errno == ECONNRESET, String(decoding: received, as: UTF8.self)) }   // timeout: still open
            received += buffer[0..<n]
        }
    }

    func testAStalledRequestIsDroppedAfterTheIdleTimeoutAndHugeHeadersAreRefused() async throws {
        try await TestDatabase.migrate()
        var config = try TestApp.configuration()
        config.port = 0
        config.connections.idleTimeout = .milliseconds(300)
        config.connections.maxHeaderBytes = 4096
        let app = try buildApplication(config, logger: LogCapture().logger)
        try await app.test(.live) { client in
            let port = try XCTUnwrap(client.port)
            // Half a request, then silence: closed after the idle timeout, well before the 3 s we wait.
            let started = Date()
            let stalled = self.exchange(port: port, "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"na", wait: 3)
            XCTAssertTrue(stalled.closed, "the stalled connection is still open")
            XCTAssertLessThan(Date().timeIntervalSince(started), 2.5)
            // A healthy request on a fresh connection still works.
            let ok = self.exchange(port: port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wait: 3)
            XCTAssertTrue(ok.received.hasPrefix("HTTP/1.1 200"), ok.received)
            // 8 KiB of one header against a 4 KiB limit: refused, connection closed.
            let huge = self.exchange(port: port, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 8192))\r\n\r\n", wait: 3)
            XCTAssertFalse(huge.received.hasPrefix("HTTP/1.1 200"), huge.received)
            XCTAssertTrue(huge.closed)
        }
    }
}
