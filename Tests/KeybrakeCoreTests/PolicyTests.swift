import Foundation
import KeybrakeCore
import XCTest

final class PolicyTests: XCTestCase {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func field(_ policy: Policy, now: Date? = nil) -> String? {
        do {
            try policy.validate(now: now ?? self.now)
            return nil
        } catch {
            return error.field ?? "<no field>"
        }
    }

    func testValidPolicyPassesAndReportsCaps() {
        let p = Policy(vendor: .stripe, label: "agent", allowedEndpoints: ["charges.create"], dailyCap: .dollars(10))
        XCTAssertNil(field(p))
        XCTAssertFalse(p.isUncapped)
        XCTAssertTrue(Policy(vendor: .resend, label: "m", allowedEndpoints: ["POST /emails"]).isUncapped)
        XCTAssertEqual(p.endpointPatterns.map(\.canonical), ["POST /v1/charges"])
    }

    func testEachRuleNamesItsField() {
        let base = Policy(vendor: .stripe, label: "agent", allowedEndpoints: ["POST /v1/charges"])
        var p = base; p.label = "  "; XCTAssertEqual(field(p), "label")
        p = base; p.allowedEndpoints = []; XCTAssertEqual(field(p), "allowed_endpoints")
        p = base; p.dailyCap = MicroUSD(0); XCTAssertEqual(field(p), "daily_usd_cap")
        p = base; p.dailyCap = .dollars(10); p.monthlyCap = .dollars(5); XCTAssertEqual(field(p), "daily_usd_cap")
        p = base; p.expiresAt = now; XCTAssertEqual(field(p), "expires_at")
        XCTAssertNil(field(p, now: now.addingTimeInterval(-1)))
        p = base; p.timezone = "Nowhere/City"; XCTAssertEqual(field(p), "timezone")
        p = base; p.rateLimitPerMinute = 0; XCTAssertEqual(field(p), "rate_limit_per_minute")
        p = base; p.duplicateWindowSeconds = Policy.maxDuplicateWindowSeconds + 1; XCTAssertEqual(field(p), "duplicate_window_seconds")
        p = base; p.allowedStripeAccounts = ["acct_1Abc"]; XCTAssertNil(field(p))
        p = base; p.allowedStripeAccounts = ["acct_"]; XCTAssertEqual(field(p), "allowed_stripe_accounts")
        p = Policy(vendor: .twilio, label: "sms", allowedEndpoints: ["POST /2010-04-01/Accounts/*/Messages.json"], allowedStripeAccounts: ["acct_1"])
        XCTAssertEqual(field(p), "allowed_stripe_accounts")
    }
}
