import Foundation
import KeybrakeCore
import XCTest

/// Every route the official SDKs know — every method — has a money class, so no route reaches the vendor unpriced by
/// accident.
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

    func testEveryStripePythonRouteHasAClass() throws {
        try assertEveryRouteClassified("stripe-python-16.1.0-routes.txt", .stripe, minimum: 640)
        XCTAssertGreaterThanOrEqual(try routes("stripe-python-16.1.0-routes.txt").filter { $0.0 == "DELETE" }.count, 28)
    }

    func testEveryTwilioPythonRouteHasAClass() throws {
        try assertEveryRouteClassified("twilio-python-9.13.0-routes.txt", .twilio, minimum: 170)
    }

    func testEveryResendPythonRouteHasAClass() throws {
        try assertEveryRouteClassified("resend-python-2.52.0-routes.txt", .resend, minimum: 140)
    }

    /// DELETE moves money too: a subscription cancelled with `invoice_now`, an item deleted with `always_invoice`.
    func testDeletesThatInvoiceAreUnpricedWhenTheirParameterSaysSo() throws {
        let cancel = try XCTUnwrap(EndpointRegistry.stripe.lookup(method: "DELETE", normalizedPath: "/v1/subscriptions/sub_1"))
        XCTAssertEqual(cancel.money, .movesNoMoney)
        let invoiceNow = try XCTUnwrap(cancel.unpricedWhen.first)
        XCTAssertTrue(invoiceNow.isMet(by: "true"))
        XCTAssertTrue(invoiceNow.isMet(by: "TRUE"))
        XCTAssertTrue(invoiceNow.isMet(by: "1"), "anything the vendor might read as true")
        XCTAssertFalse(invoiceNow.isMet(by: "false"))
        XCTAssertFalse(invoiceNow.isMet(by: nil))
        let item = try XCTUnwrap(EndpointRegistry.stripe.lookup(method: "DELETE", normalizedPath: "/v1/subscription_items/si_1"))
        XCTAssertTrue(item.unpricedWhen.first?.isMet(by: "Always_Invoice") ?? false)
        XCTAssertFalse(item.unpricedWhen.first?.isMet(by: "create_prorations") ?? true)
        XCTAssertEqual(EndpointRegistry.stripe.moneyClass(method: "DELETE", normalizedPath: "/v1/brand_new/x"), .unpriced)
        XCTAssertEqual(EndpointRegistry.stripe.moneyClass(method: "GET", normalizedPath: "/v1/brand_new/x"), .movesNoMoney)
    }

    /// Endpoints that hand out credentials are their own class, on every method, for each vendor.
    func testCredentialEndpointsAreTheirOwnClass() throws {
        let cases: [(EndpointRegistry, String, String)] = [
            (.twilio, "GET", "/2010-04-01/Accounts/AC1.json"), (.twilio, "POST", "/2010-04-01/Accounts/AC1.json"),
            (.twilio, "GET", "/2010-04-01/Accounts.json"), (.twilio, "POST", "/2010-04-01/Accounts.json"),
            (.twilio, "POST", "/2010-04-01/Accounts/AC1/Keys.json"), (.twilio, "GET", "/2010-04-01/Accounts/AC1/Keys/SK1.json"),
            (.twilio, "DELETE", "/2010-04-01/Accounts/AC1/SigningKeys/SK1.json"), (.twilio, "POST", "/2010-04-01/Accounts/AC1/Tokens.json"),
            (.resend, "POST", "/api-keys"), (.resend, "GET", "/api-keys"), (.resend, "DELETE", "/api-keys/k1"), (.resend, "GET", "/webhooks/w1"),
            (.stripe, "POST", "/v1/webhook_endpoints"), (.stripe, "GET", "/v1/webhook_endpoints/we_1"), (.stripe, "POST", "/v1/ephemeral_keys"),
            (.stripe, "GET", "/v1/apps/secrets/find"), (.stripe, "POST", "/v2/core/event_destinations"),
        ]
        for (registry, method, path) in cases {
            XCTAssertEqual(registry.moneyClass(method: method, normalizedPath: path), .credential, "\(method) \(path)")
        }
        XCTAssertEqual(EndpointRegistry.twilio.moneyClass(method: "GET", normalizedPath: "/2010-04-01/Accounts/AC1/Messages/SM1.json"), .movesNoMoney)
        // Named at key creation: refused; under a broad grant: accepted (refused at request time).
        for (vendor, entry) in [(Vendor.twilio, "GET /2010-04-01/Accounts/AC123.json"), (.twilio, "GET /2010-04-01/Accounts/*"), (.stripe, "* /v1/webhook_endpoints"),
                                 (.resend, "POST /api-keys"), (.resend, "PATCH /api-keys/*")] {
            let policy = Policy(vendor: vendor, label: "a", allowedEndpoints: [entry])
            XCTAssertThrowsError(try policy.validate(now: nil), entry) { error in
                XCTAssertTrue((error as? KeybrakeError)?.message.contains("never forwards") ?? false)
            }
        }
        XCTAssertNoThrow(try Policy(vendor: .twilio, label: "a", allowedEndpoints: ["GET /2010-04-01/**"]).validate(now: nil))
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
