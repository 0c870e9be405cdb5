import HTTPLayer
import HTTPTypes
import XCTest

/// The address a signup is counted for: forwarded headers are believed only from the deployment's own proxies.
final class ClientAddressTests: XCTestCase {
    let proxies = TrustedProxies(parsing: "10.0.0.0/8, 127.0.0.1, fd00::/8")!

    func headers(_ fields: [String: String]) -> HTTPFields {
        var h = HTTPFields()
        for (k, v) in fields { h[HTTPField.Name(k)!] = v }
        return h
    }

    func testForwardedHeadersFromAnUntrustedPeerAreIgnored() {
        XCTAssertEqual(proxies.clientKey(peer: "203.0.113.7", headers: headers(["X-Forwarded-For": "198.51.100.1"])), "203.0.113.7")
        XCTAssertEqual(TrustedProxies.none.clientKey(peer: "10.1.2.3", headers: headers(["X-Forwarded-For": "198.51.100.1"])), "10.1.2.3")
    }

    func testATrustedProxyNamesTheClientAndSpoofedLeftEntriesDoNotCount() {
        // The client wrote 1.1.1.1 itself; the load balancer (10.0.0.5) appended the address it saw.
        XCTAssertEqual(proxies.clientKey(peer: "10.0.0.5", headers: headers(["X-Forwarded-For": "1.1.1.1, 198.51.100.9"])), "198.51.100.9")
        // Two trusted hops: the nearest untrusted one is the client.
        XCTAssertEqual(proxies.clientKey(peer: "127.0.0.1", headers: headers(["X-Forwarded-For": "198.51.100.9, 10.0.0.5"])), "198.51.100.9")
        var forwarded = proxies
        forwarded.header = .forwarded
        XCTAssertEqual(forwarded.clientKey(peer: "10.0.0.5", headers: headers(["Forwarded": "for=192.0.2.60;proto=https, for=\"[2001:db8:cafe::17]:4711\""])),
                       "2001:db8:cafe:0::/64")
        // A trusted peer without the header is itself the client.
        XCTAssertEqual(proxies.clientKey(peer: "10.0.0.5", headers: headers([:])), "10.0.0.5")
    }

    /// A proxy that appends to `X-Forwarded-For` passes a client's own `Forwarded` through (and the other way round):
    /// only the header the deployment names is read, with no fallback to the other.
    func testOnlyTheConfiguredHeaderIsRead() {
        let spoof = headers(["Forwarded": "for=1.1.1.1", "X-Forwarded-For": "198.51.100.9"])
        XCTAssertEqual(proxies.clientKey(peer: "10.0.0.5", headers: spoof), "198.51.100.9", "x-forwarded-for by default")
        XCTAssertEqual(proxies.clientKey(peer: "10.0.0.5", headers: headers(["Forwarded": "for=1.1.1.1"])), "10.0.0.5",
                       "a Forwarded the proxy did not write is not read: the peer is the client")
        var forwarded = proxies
        forwarded.header = .forwarded
        XCTAssertEqual(forwarded.clientKey(peer: "10.0.0.5", headers: spoof), "1.1.1.1")
        XCTAssertEqual(forwarded.clientKey(peer: "10.0.0.5", headers: headers(["X-Forwarded-For": "198.51.100.9"])), "10.0.0.5")
    }

    func testIPv6ClientsAreGroupedBySlash64() {
        let a = proxies.clientKey(peer: "2001:db8:1:2::1", headers: headers([:]))
        let b = proxies.clientKey(peer: "2001:db8:1:2:ffff:ffff:ffff:ffff", headers: headers([:]))
        let c = proxies.clientKey(peer: "2001:db8:1:3::1", headers: headers([:]))
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        XCTAssertEqual(proxies.clientKey(peer: "::ffff:198.51.100.4", headers: headers([:])), "198.51.100.4", "IPv4-mapped is that IPv4 client")
    }

    func testTheListParses() {
        XCTAssertNil(TrustedProxies(parsing: "10.0.0.0/33"))
        XCTAssertNil(TrustedProxies(parsing: "not-an-ip"))
        XCTAssertEqual(TrustedProxies(parsing: ""), TrustedProxies.none)
    }
}
