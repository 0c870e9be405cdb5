import Foundation
import Webhooks
import XCTest

/// Standard Webhooks signatures and the address rules, without a database.
final class WebhookSigningTests: XCTestCase {
    /// The test vector published with the Standard Webhooks reference libraries (and Svix's): if this matches, a
    /// receiver's stock library accepts what Keybrake sends.
    func testSignatureMatchesTheStandardWebhooksTestVector() {
        let signature = WebhookSigner.signature(secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                                timestamp: 1_614_265_330, body: Array(#"{"test": 2432232314}"#.utf8))
        XCTAssertEqual(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        // The prefix is optional, as in the reference implementation.
        XCTAssertEqual(WebhookSigner.signature(secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                               timestamp: 1_614_265_330, body: Array(#"{"test": 2432232314}"#.utf8)), signature)
    }

    func testAnyChangeToIdTimestampOrBodyChangesTheSignature() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body = Array(#"{"test": 2432232314}"#.utf8)
        let base = WebhookSigner.signature(secret: secret, id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: body)
        XCTAssertNotEqual(WebhookSigner.signature(secret: secret, id: "msg_p5jXN8AQM9LWM0D4loKWxJel", timestamp: 1_614_265_330, body: body), base)
        XCTAssertNotEqual(WebhookSigner.signature(secret: secret, id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_331, body: body), base)
        XCTAssertNotEqual(WebhookSigner.signature(secret: secret, id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330,
                                                  body: Array(#"{"test": 2432232315}"#.utf8)), base)
    }

    /// During a rotation both secrets sign: two `v1,` signatures, space-separated, current first.
    func testTwoSecretsGiveTwoSignatures() {
        let a = WebhookSigner.newSecret(), b = WebhookSigner.newSecret()
        XCTAssertTrue(a.hasPrefix("whsec_"))
        XCTAssertEqual(WebhookSigner.keyBytes(a)?.count, 32)
        XCTAssertNotEqual(a, b)
        let body = Array("{}".utf8)
        let headers = Dictionary(uniqueKeysWithValues: WebhookSigner.headers(secrets: [a, b], id: "evt_1", timestamp: 42, body: body))
        XCTAssertEqual(headers["webhook-id"], "evt_1")
        XCTAssertEqual(headers["webhook-timestamp"], "42")
        XCTAssertEqual(headers["webhook-signature"], [a, b].compactMap { WebhookSigner.signature(secret: $0, id: "evt_1", timestamp: 42, body: body) }
            .joined(separator: " "))
        XCTAssertEqual(headers["webhook-signature"]?.split(separator: " ").count, 2)
    }

    func testRetryScheduleIsTheDocumentedOne() {
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let delays = (1...8).map { RetrySchedule.next(after: $0, failedAt: t0).map { $0.timeIntervalSince(t0) } }
        XCTAssertEqual(delays, [5, 300, 1800, 7200, 18000, 36000, 36000, nil])
        XCTAssertEqual(RetrySchedule.maxAttempts, 8)
    }

    func testPrivateAndReservedAddressesAreNotPublic() {
        for text in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                     "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                     "64:ff9b::a00:1", "2001:db8::1", "198.18.0.1", "192.0.2.1"] {
            guard let address = IPAddressRules.parse(text) else { XCTFail("did not parse \(text)"); continue }
            XCTAssertFalse(IPAddressRules.isPublic(address), text)
        }
        for text in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "100.128.0.1"] {
            guard let address = IPAddressRules.parse(text) else { XCTFail("did not parse \(text)"); continue }
            XCTAssertTrue(IPAddressRules.isPublic(address), text)
        }
    }

    func testURLRules() throws {
        let strict = WebhookURLPolicy(allowPrivate: false), lax = WebhookURLPolicy(allowPrivate: true)
        XCTAssertEqual(try strict.check("https://hooks.example.com/kb").host, "hooks.example.com")
        for bad in ["http://hooks.example.com/kb", "https://127.0.0.1/kb", "https://10.0.0.5:8443/x", "https://localhost/kb", "https://[::1]/kb",
                    "https://metadata.internal/x", "https://user:pw@hooks.example.com/", "ftp://hooks.example.com/", "not a url", "https://intranet/x"] {
            XCTAssertThrowsError(try strict.check(bad), bad)
        }
        XCTAssertEqual(try lax.check("http://127.0.0.1:9999/kb").port, 9999)
        XCTAssertThrowsError(try lax.check("ftp://127.0.0.1/"))
    }
}
