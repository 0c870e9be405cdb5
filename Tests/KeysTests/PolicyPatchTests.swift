import Foundation
import HTTPLayer
import KeybrakeCore
import XCTest

@testable import Keys

/// `POST /v1/keys` and `PATCH /v1/keys/{id}` bodies: a PATCH changes only what it names, `null` clears an optional
/// limit, and a field that cannot be cleared says so instead of being reset.
final class PolicyPatchTests: XCTestCase {
    func base() -> Policy {
        Policy(vendor: .twilio, label: "sms", allowedEndpoints: ["POST /2010-04-01/Accounts/*/Messages.json"], dailyCap: MicroUSD(10_000_000),
               monthlyCap: MicroUSD(100_000_000), maxRequest: MicroUSD(8_300), rateLimitPerMinute: 60, timezone: "Europe/Paris",
               alertThresholds: [25, 50])
    }

    func patched(_ json: [String: JSONValue]) throws(KeybrakeError) -> Policy {
        var p = base()
        try KeysController.apply(JSONObjectReader(json), to: &p)
        return p
    }

    func testAPatchChangesOnlyWhatItNames() throws {
        let p = try patched(["daily_usd_cap": .number("12.5")])
        XCTAssertEqual(p.dailyCap, MicroUSD(12_500_000))
        XCTAssertEqual(p.monthlyCap, MicroUSD(100_000_000))
        XCTAssertEqual(p.maxRequest, MicroUSD(8_300))
        XCTAssertEqual(p.timezone, "Europe/Paris")
        XCTAssertEqual(p.label, "sms")
        XCTAssertEqual(p.alertThresholds, [25, 50])
    }

    func testNullClearsAnOptionalLimitAndIsRefusedWhereThereIsNone() throws {
        let cleared = try patched(["daily_usd_cap": .null, "max_request_usd": .null, "rate_limit_per_minute": .null,
                                   "alert_thresholds": .null, "allowed_stripe_accounts": .null])
        XCTAssertNil(cleared.dailyCap)
        XCTAssertNil(cleared.maxRequest)
        XCTAssertNil(cleared.rateLimitPerMinute)
        XCTAssertNil(cleared.alertThresholds, "null goes back to the default thresholds")
        XCTAssertEqual(cleared.allowedStripeAccounts, [])
        XCTAssertEqual(cleared.monthlyCap, MicroUSD(100_000_000))
        for field in ["label", "allowed_endpoints", "auto_idempotency", "duplicate_window_seconds", "timezone"] {
            XCTAssertThrowsError(try patched([field: .null]), field) { XCTAssertEqual(($0 as? KeybrakeError)?.field, field) }
        }
    }

    func testCapsAreWholeCentsAndARequestsMaximumMayBeFiner() {
        XCTAssertThrowsError(try patched(["monthly_usd_cap": .number("0.005")])) { XCTAssertEqual(($0 as? KeybrakeError)?.field, "monthly_usd_cap") }
        XCTAssertEqual(try patched(["max_request_usd": .string("0.000001")]).maxRequest, MicroUSD(1))
        XCTAssertThrowsError(try patched(["max_request_usd": .number("0.0000001")]))
    }

    func testACreateNamesAnUnknownFieldOrAMissingOne() {
        func refused(_ json: [String: JSONValue]) -> String? {
            do { _ = try KeysController.parseCreate(JSONObjectReader(json)); return nil } catch { return error.field }
        }
        let ok: [String: JSONValue] = ["vendor": .string("stripe"), "label": .string("l"), "allowed_endpoints": .array([.string("POST /v1/charges")])]
        XCTAssertNil(refused(ok))
        XCTAssertEqual(refused(ok.merging(["daily_cap": .number("5")]) { $1 }), "daily_cap", "a typo never passes silently")
        XCTAssertEqual(refused(ok.merging(["vendor": .string("paypal")]) { $1 }), "vendor")
        XCTAssertEqual(refused(ok.filter { $0.key != "allowed_endpoints" }), "allowed_endpoints")
    }

    func testAPerTenantLimitSaysWhatIsTooFast() {
        let limiter = TenantActionLimiter(perMinutePerTenant: 2, action: "changing vault keys")
        XCTAssertNoThrow(try limiter.admit(tenantId: "ten_a"))
        XCTAssertNoThrow(try limiter.admit(tenantId: "ten_a"))
        XCTAssertNoThrow(try limiter.admit(tenantId: "ten_b"), "each tenant has its own minute")
        XCTAssertThrowsError(try limiter.admit(tenantId: "ten_a")) { error in
            let e = error as? KeybrakeError
            XCTAssertEqual(e?.status, 429)
            XCTAssertEqual(e?.code, "rate_limited")
            XCTAssertTrue(e?.message.contains("changing vault keys") ?? false)
            XCTAssertTrue((1...60).contains(e?.retryAfterSeconds ?? 0))
        }
    }
}
