import Foundation
import KeybrakeCore
import XCTest

/// Every POST route the official SDKs know has a money class, so no route reaches the vendor unpriced by accident.
final class EndpointRegistryTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    func routes(_ file: String) throws -> [(String, String)] {
        let text = try String(contentsOf: Self.fixtures.appendingPathComponent(file), encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        }
    }

    /// `*` in the SDK's route stands for an id; the registry must know the route with a concrete one.
    func concrete(_ path: String) -> String { path.replacingOccurrences(of: "*", with: "id_123") }

    func assertEveryRouteClassified(_ file: String, _ registry: EndpointRegistry, minimum: Int) throws {
        let list = try routes(file)
        XCTAssertGreaterThanOrEqual(list.count, minimum, "fixture \(file) looks truncated")
        for (method, path) in list {
            let found = registry.lookup(method: method, normalizedPath: concrete(path))
            XCTAssertNotNil(found, "\(method) \(path) from \(file) has no money class in EndpointRegistry.\(registry.vendor)")
        }
    }

    func testEveryStripePythonPostRouteHasAClass() throws {
        try assertEveryRouteClassified("stripe-python-16.1.0-post-routes.txt", .stripe, minimum: 300)
    }

    func testEveryTwilioPythonPostRouteHasAClass() throws {
        try assertEveryRouteClassified("twilio-python-9.13.0-post-routes.txt", .twilio, minimum: 50)
    }

    func testEveryResendPythonPostRouteHasAClass() throws {
        try assertEveryRouteClassified("resend-python-2.52.0-post-routes.txt", .resend, minimum: 35)
    }

    /// The routes the money-edges issue found open on a $1-a-request key: each moves money, so each is priced or refused.
    func testMoneyMovingStripeRoutesArePricedOrUnpriced() {
        let moving = [
            "/v1/charges", "/v1/charges/ch_1/capture", "/v1/payment_intents/pi_1/capture", "/v1/payment_intents/pi_1/confirm",
            "/v1/transfers/tr_1/reversals", "/v1/application_fees/fee_1/refunds", "/v1/subscriptions", "/v1/subscription_items",
            "/v1/credit_notes", "/v1/treasury/outbound_payments", "/v1/issuing/authorizations/iauth_1/approve", "/v1/quotes/qt_1/accept",
            "/v2/money_management/outbound_payments", "/v1/invoices/in_1/pay", "/v1/refunds", "/v1/payouts", "/v1/topups",
            "/v1/terminal/readers/tmr_1/process_payment_intent",
        ]
        for path in moving {
            let money = EndpointRegistry.stripe.moneyClass(method: "POST", normalizedPath: path)
            XCTAssertNotEqual(money, .movesNoMoney, "POST \(path) moves money")
        }
        XCTAssertEqual(EndpointRegistry.stripe.moneyClass(method: "POST", normalizedPath: "/v1/payment_intents/pi_1"), .movesNoMoney)
        XCTAssertEqual(EndpointRegistry.stripe.moneyClass(method: "POST", normalizedPath: "/v1/customers"), .movesNoMoney)
        XCTAssertEqual(EndpointRegistry.stripe.moneyClass(method: "GET", normalizedPath: "/v1/charges/ch_1"), .movesNoMoney)
        // A POST nobody registered is treated as moving money Keybrake cannot price.
        XCTAssertEqual(EndpointRegistry.stripe.moneyClass(method: "POST", normalizedPath: "/v1/brand_new_money_thing"), .unpriced)
        XCTAssertEqual(EndpointRegistry.twilio.moneyClass(method: "POST", normalizedPath: "/2010-04-01/Accounts/AC1/Calls.json"), .unpriced)
        XCTAssertEqual(EndpointRegistry.twilio.lookup(method: "POST", normalizedPath: "/2010-04-01/Accounts/AC1/Messages.json")?.rule, .twilioMessage)
        XCTAssertEqual(EndpointRegistry.resend.lookup(method: "POST", normalizedPath: "/inboxes/in_1/drafts/d_1/send")?.rule, .resendEmail)
    }

    /// Literal routes are not shadowed by the wildcard route of the same length.
    func testLiteralRoutesWinOverWildcards() {
        XCTAssertEqual(EndpointRegistry.stripe.lookup(method: "POST", normalizedPath: "/v1/invoices/create_preview")?.path, "/v1/invoices/create_preview")
        XCTAssertEqual(EndpointRegistry.stripe.lookup(method: "POST", normalizedPath: "/v1/invoices/in_1")?.path, "/v1/invoices/*")
    }

    /// A capped key cannot open an unpriced endpoint, by name or by wildcard; an uncapped key can.
    func testCappedKeyCannotAllowUnpricedEndpoints() throws {
        for endpoints in [["POST /v1/subscriptions"], ["POST /v1/**"], ["* /v1/subscription_items/*"]] {
            let policy = Policy(vendor: .stripe, label: "a", allowedEndpoints: endpoints, dailyCap: MicroUSD(1_000_000))
            XCTAssertThrowsError(try policy.validate(now: nil), "\(endpoints)") { error in
                let e = error as? KeybrakeError
                XCTAssertEqual(e?.field, "allowed_endpoints")
                XCTAssertTrue(e?.message.contains("cannot price") ?? false, e?.message ?? "")
            }
        }
        let uncapped = Policy(vendor: .stripe, label: "a", allowedEndpoints: ["POST /v1/**"])
        XCTAssertNoThrow(try uncapped.validate(now: nil))
        let capped = Policy(vendor: .stripe, label: "a", allowedEndpoints: ["POST /v1/charges", "POST /v1/charges/*/capture", "POST /v1/customers"],
                            maxRequest: MicroUSD(1_000_000))
        XCTAssertNoThrow(try capped.validate(now: nil))
    }
}
