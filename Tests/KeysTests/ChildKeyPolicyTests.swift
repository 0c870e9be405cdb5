import Foundation
import HTTPLayer
import KeybrakeCore
import XCTest

@testable import Keys

/// A child key's policy is its parent's, narrowed by what the mint asked for (DESIGN §9). What was not asked for is
/// inherited, or left to the ancestors, whose limits bind every request of the child anyway.
final class ChildKeyPolicyTests: XCTestCase {
    let now = Date(timeIntervalSince1970: 1_796_000_000)

    func parent(expiresIn: TimeInterval? = nil) -> Policy {
        Policy(vendor: .stripe, label: "flow", allowedEndpoints: ["POST /v1/charges", "GET /v1/charges/*"], dailyCap: MicroUSD(500_000_000),
               totalCap: MicroUSD(5_000_000_000), expiresAt: expiresIn.map { now.addingTimeInterval($0) }, rateLimitPerMinute: 120,
               duplicateWindowSeconds: 3_600, allowedStripeAccounts: ["acct_1"])
    }

    func ask(_ json: [String: JSONValue]) throws(KeybrakeError) -> ChildKeysController.Ask {
        try ChildKeysController.parse(JSONObjectReader(json))
    }

    func testWhatIsNotAskedForIsInheritedAndTheCapsAreTheChildsOwn() throws {
        let child = try ChildKeysController.policy(ask(["label": .string(" run 7 "), "total_usd_cap": .number("25")]), parent: parent(), now: now)
        XCTAssertEqual(child.label, "run 7")
        XCTAssertEqual(child.vendor, .stripe)
        XCTAssertEqual(child.allowedEndpoints, ["POST /v1/charges", "GET /v1/charges/*"])
        XCTAssertEqual(child.rateLimitPerMinute, 120)
        XCTAssertEqual(child.duplicateWindowSeconds, 3_600)
        XCTAssertEqual(child.allowedStripeAccounts, ["acct_1"])
        XCTAssertEqual(child.totalCap, MicroUSD(25_000_000))
        XCTAssertNil(child.dailyCap, "not asked: the parent's daily cap binds through the chain, not as a copy")
    }

    func testTheDefaultLifetimeIsAnHourOrLessIfTheParentDiesSooner() throws {
        let long = try ChildKeysController.policy(ask(["label": .string("r")]), parent: parent(), now: now)
        XCTAssertEqual(long.expiresAt, now.addingTimeInterval(3_600))
        let soon = try ChildKeysController.policy(ask(["label": .string("r")]), parent: parent(expiresIn: 600), now: now)
        XCTAssertEqual(soon.expiresAt, now.addingTimeInterval(600), "the default never outlives the parent")
        let asked = try ChildKeysController.policy(ask(["label": .string("r"), "expires_in_seconds": .number("120")]),
                                                   parent: parent(expiresIn: 600), now: now)
        XCTAssertEqual(asked.expiresAt, now.addingTimeInterval(120))
    }

    func testAskingForMoreThanTheParentIsRefusedNamingTheField() {
        func refused(_ json: [String: JSONValue], parent p: Policy? = nil) -> String? {
            do {
                _ = try ChildKeysController.policy(ask(json.merging(["label": .string("r")]) { a, _ in a }), parent: p ?? parent(), now: now)
                return nil
            } catch {
                return error.field
            }
        }
        XCTAssertEqual(refused(["daily_usd_cap": .number("500.01")]), "daily_usd_cap")
        XCTAssertEqual(refused(["allowed_endpoints": .array([.string("POST /v1/**")])]), "allowed_endpoints")
        XCTAssertEqual(refused(["expires_in_seconds": .number("601")], parent: parent(expiresIn: 600)), "expires_in_seconds")
        XCTAssertEqual(refused(["duplicate_window_seconds": .number("60")]), "duplicate_window_seconds", "a shorter guard widens")
        XCTAssertEqual(refused(["allowed_stripe_accounts": .array([.string("acct_2")])]), "allowed_stripe_accounts")
        XCTAssertNil(refused(["daily_usd_cap": .number("500"), "allowed_endpoints": .array([.string("GET /v1/charges/*")])]))
    }

    func testTheMintRequestIsReadStrictly() {
        func refused(_ json: [String: JSONValue]) -> String? {
            do { _ = try ask(json); return nil } catch { return error.field }
        }
        XCTAssertEqual(refused([:]), "label")
        XCTAssertEqual(refused(["label": .string("r"), "vendor": .string("twilio")]), "vendor", "not a field of a mint")
        XCTAssertEqual(refused(["label": .string("r"), "run_id": .string("")]), "run_id")
        XCTAssertEqual(refused(["label": .string("r"), "run_id": .string(String(repeating: "x", count: 201))]), "run_id")
        XCTAssertEqual(refused(["label": .string("r\u{202E}")]), "label")
        XCTAssertEqual(refused(["label": .string("r"), "expires_in_seconds": .number("0")]), "expires_in_seconds")
        XCTAssertEqual(refused(["label": .string("r"), "expires_in_seconds": .number(String(90 * 86_400 + 1))]), "expires_in_seconds")
        XCTAssertEqual(refused(["label": .string("r"), "total_usd_cap": .number("1.001")]), "total_usd_cap", "caps are whole cents")
        XCTAssertNil(refused(["label": .string("r"), "max_request_usd": .number("0.0083")]), "a request's maximum may be finer")
    }
}
