import Foundation
@testable import Proxy
import XCTest

/// HTTPS_PROXY / HTTP_PROXY / NO_PROXY as deployments set them.
final class EgressProxyTests: XCTestCase {
    func testHTTPSProxyAppliesToHTTPSUpstreamsAndHTTPProxyToHTTPOnes() throws {
        let p = try EgressProxy.fromEnvironment(["HTTPS_PROXY": "http://proxy.corp:3128", "HTTP_PROXY": "proxy2.corp:8080"])
        XCTAssertEqual(p.server(for: URL(string: "https://api.stripe.com")!)?.host, "proxy.corp")
        XCTAssertEqual(p.server(for: URL(string: "https://api.stripe.com")!)?.port, 3128)
        XCTAssertEqual(p.server(for: URL(string: "http://api.example.com")!)?.host, "proxy2.corp")
        XCTAssertEqual(p.server(for: URL(string: "http://api.example.com")!)?.port, 8080, "a proxy without scheme is http://")
    }

    func testLowerCaseNamesWinAndCredentialsArePercentDecoded() throws {
        let p = try EgressProxy.fromEnvironment(["https_proxy": "http://us%40r:p%3Ass@low:1", "HTTPS_PROXY": "http://up:2"])
        let s = try XCTUnwrap(p.server(for: URL(string: "https://api.resend.com")!))
        XCTAssertEqual(s.host, "low")
        XCTAssertEqual(s.username, "us@r")
        XCTAssertEqual(s.password, "p:ss")
    }

    func testNoProxyMatchesHostsTheirSubdomainsPortsAndStar() throws {
        let p = try EgressProxy.fromEnvironment(["HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": " .internal, stripe.com ,10.0.0.7, twilio.com:8443"])
        XCTAssertNil(p.server(for: URL(string: "https://api.stripe.com")!), "subdomain of stripe.com")
        XCTAssertNil(p.server(for: URL(string: "https://stripe.com")!))
        XCTAssertNotNil(p.server(for: URL(string: "https://notstripe.com")!), "a suffix that is not a domain boundary")
        XCTAssertNil(p.server(for: URL(string: "https://vault.internal")!))
        XCTAssertNil(p.server(for: URL(string: "https://10.0.0.7")!))
        XCTAssertNotNil(p.server(for: URL(string: "https://api.twilio.com")!), "only port 8443 of twilio.com is direct")
        XCTAssertNil(p.server(for: URL(string: "https://api.twilio.com:8443")!))
        XCTAssertNotNil(p.server(for: URL(string: "https://api.resend.com")!))
        let all = try EgressProxy.fromEnvironment(["HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"])
        XCTAssertNil(all.server(for: URL(string: "https://api.resend.com")!))
    }

    func testLoopbackIsAlwaysDirect() throws {
        let p = try EgressProxy.fromEnvironment(["HTTPS_PROXY": "http://proxy:3128", "HTTP_PROXY": "http://proxy:3128"])
        XCTAssertNil(p.server(for: URL(string: "http://127.0.0.1:8420")!))
        XCTAssertNil(p.server(for: URL(string: "https://localhost:8443")!))
        XCTAssertNil(p.server(for: URL(string: "http://[::1]:80")!))
    }

    func testNoProxyVariablesMeanDirect() throws {
        let p = try EgressProxy.fromEnvironment([:])
        XCTAssertNil(p.server(for: URL(string: "https://api.stripe.com")!))
        XCTAssertNil(p.clientProxy(for: URL(string: "https://api.stripe.com")!))
    }

    func testUnsupportedProxiesAreRefusedWithoutEchoingTheValue() {
        for bad in ["https://user:hunter2@proxy:3128", "ftp://proxy", "socks5://user:hunter2@proxy"] {
            XCTAssertThrowsError(try EgressProxy.fromEnvironment(["HTTPS_PROXY": bad])) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains("HTTPS_PROXY"), text)
                XCTAssertFalse(text.contains("hunter2"), "a proxy password never reaches an error message")
            }
        }
        XCTAssertEqual(try EgressProxy.fromEnvironment(["HTTPS_PROXY": "socks5://s:1081"]).https?.kind, .socks5)
    }
}
