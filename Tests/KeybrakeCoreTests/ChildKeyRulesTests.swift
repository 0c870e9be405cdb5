import Foundation
import KeybrakeCore
import XCTest

/// A child key may only narrow its parent (DESIGN §9): pattern containment, both directions, and each limit.
final class ChildKeyRulesTests: XCTestCase {
    func pattern(_ text: String, _ vendor: Vendor = .stripe) -> EndpointPattern {
        try! EndpointPattern.parse(text, vendor: vendor)
    }

    /// (inner, outer, inner ⊆ outer). Every pair is also checked the other way round where the answer is known.
    static let pairs: [(String, String, Bool)] = [
        ("GET /v1/charges/*", "GET /v1/charges/**", true),
        ("GET /v1/charges/**", "GET /v1/charges/*", false),
        ("POST /v1/**", "POST /v1/charges", false),
        ("POST /v1/charges", "POST /v1/**", true),
        ("POST /v1/charges", "POST /v1/charges", true),
        ("POST /v1/charges", "* /v1/charges", true),
        ("* /v1/charges", "POST /v1/charges", false),
        ("GET /v1/charges", "POST /v1/charges", false),
        ("GET /v1/charges/ch_1", "GET /v1/charges/*", true),
        ("GET /v1/charges/*", "GET /v1/charges/ch_1", false),
        ("GET /v1/charges/*/refunds", "GET /v1/*/*/refunds", true),
        ("GET /v1/*/*/refunds", "GET /v1/charges/*/refunds", false),
        ("GET /v1/charges", "GET /v1/charges/**", true),       // ** matches nothing too
        ("GET /v1/charges/**", "GET /v1/charges", false),
        ("GET /v1/charges/**", "GET /v1/**", true),
        ("GET /v1/**", "GET /v1/charges/**", false),
        ("GET /v1/charges/*", "GET /v1/charges", false),
        ("GET /v1/charges", "GET /v1/charges/*", false),
        ("GET /v1/charges/*/x", "GET /v1/charges/*", false),
        ("GET /**", "GET /**", true),
        // Operation aliases count as their patterns.
        ("charges.create", "POST /v1/charges", true),
        ("charges.create", "POST /v1/**", true),
        ("POST /v1/charges", "charges.create", true),
        ("refunds.create", "charges.create", false),
        ("POST /v1/payment_intents/*/confirm", "payment_intents.confirm", true),
        ("charges.retrieve", "charges.*", true),
        ("charges.*", "GET /v1/charges/**", false),
    ]

    func testPatternContainmentTable() {
        for (inner, outer, expected) in Self.pairs {
            XCTAssertEqual(pattern(inner).isContained(in: pattern(outer)), expected, "\(inner) ⊆ \(outer)")
        }
        // Containment is reflexive and antisymmetric on distinct patterns: never both ways unless equal languages.
        for (inner, outer, expected) in Self.pairs where expected {
            let back = pattern(outer).isContained(in: pattern(inner))
            XCTAssertEqual(back, pattern(inner).canonical == pattern(outer).canonical, "\(outer) ⊆ \(inner)")
        }
    }

    /// The exact check agrees with matching on concrete paths: whenever inner ⊆ outer, every path inner matches,
    /// outer matches too (checked on paths built from the patterns' own segments).
    func testContainmentAgreesWithMatching() {
        let samples = ["/v1", "/v1/charges", "/v1/charges/ch_1", "/v1/charges/ch_1/refunds", "/v1/refunds", "/v1/x/y/refunds",
                       "/v1/charges/ch_1/x", "/v2/charges", "/"]
        for (inner, outer, _) in Self.pairs {
            let i = pattern(inner), o = pattern(outer)
            guard i.isContained(in: o) else { continue }
            for path in samples {
                for method in ["GET", "POST"] where i.matches(method: method, normalizedPath: path) {
                    XCTAssertTrue(o.matches(method: method, normalizedPath: path), "\(inner) ⊆ \(outer) but \(method) \(path)")
                }
            }
        }
    }

    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func parent() -> Policy {
        Policy(vendor: .stripe, label: "fleet", allowedEndpoints: ["POST /v1/charges", "GET /v1/charges/**"],
               dailyCap: .dollars(100), monthlyCap: .dollars(1000), maxRequest: .dollars(50), totalCap: .dollars(5000),
               expiresAt: now.addingTimeInterval(7200), rateLimitPerMinute: 600, duplicateWindowSeconds: 60,
               allowedStripeAccounts: ["acct_1A"])
    }

    func field(_ child: Policy) -> String? {
        do { try ChildKeyRules.check(child, within: parent()); return nil } catch { return error.field ?? "<none>" }
    }

    func testEveryWideningFieldIsNamed() {
        var base = parent()
        base.label = "run 1"
        base.expiresAt = now.addingTimeInterval(3600)
        XCTAssertNil(field(base), "the parent's own limits are not wider than the parent")
        var c = base; c.allowedEndpoints = ["POST /v1/refunds"]; XCTAssertEqual(field(c), "allowed_endpoints")
        c = base; c.allowedEndpoints = ["GET /v1/charges/*"]; XCTAssertNil(field(c))
        c = base; c.dailyCap = .dollars(101); XCTAssertEqual(field(c), "daily_usd_cap")
        c = base; c.dailyCap = .dollars(10); XCTAssertNil(field(c))
        c = base; c.monthlyCap = .dollars(1001); XCTAssertEqual(field(c), "monthly_usd_cap")
        c = base; c.maxRequest = .dollars(51); XCTAssertEqual(field(c), "max_request_usd")
        c = base; c.totalCap = .dollars(5001); XCTAssertEqual(field(c), "total_usd_cap")
        c = base; c.expiresAt = now.addingTimeInterval(7201); XCTAssertEqual(field(c), "expires_in_seconds")
        c = base; c.expiresAt = nil; XCTAssertEqual(field(c), "expires_in_seconds")
        c = base; c.duplicateWindowSeconds = 0; XCTAssertEqual(field(c), "duplicate_window_seconds")
        c = base; c.duplicateWindowSeconds = 600; XCTAssertNil(field(c))
        c = base; c.allowedStripeAccounts = ["acct_2B"]; XCTAssertEqual(field(c), "allowed_stripe_accounts")
        c = base; c.allowedStripeAccounts = []; XCTAssertNil(field(c))
        c = base; c.timezone = "Europe/Paris"; XCTAssertEqual(field(c), "timezone")
        c = base; c.rateLimitPerMinute = nil; XCTAssertEqual(field(c), "rate_limit_per_minute")
        c = base; c.autoIdempotency = false; XCTAssertEqual(field(c), "auto_idempotency")
        c = base; c.vendor = .twilio; XCTAssertEqual(field(c), "vendor")
    }
}
