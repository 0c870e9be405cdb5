import Foundation
import KeybrakeCore
import XCTest
@testable import Proxy

final class StripePricerTests: XCTestCase {
    let pricer = StripePricer(fx: FXTable(rates: ["eur": 1_100_000, "jpy": 6_700, "kwd": 3_250_000]))

    private func decide(_ path: String, _ body: String = "", method: String = "POST") throws -> PricingDecision {
        try pricer.price(method: method, normalizedPath: path, form: FormBody(parsing: Data(body.utf8)))
    }

    private func assertError(_ path: String, _ body: String, code: String, field: String? = nil, contains: String? = nil,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decide(path, body), file: file, line: line) { error in
            let e = error as! KeybrakeError
            XCTAssertEqual(e.status, 400, file: file, line: line)
            XCTAssertEqual(e.code, code, e.message, file: file, line: line)
            if let field { XCTAssertEqual(e.field, field, file: file, line: line) }
            if let contains { XCTAssertTrue(e.message.contains(contains), e.message, file: file, line: line) }
        }
    }

    // MARK: explicit amounts

    func testExplicitAmountEndpoints() throws {
        XCTAssertEqual(try decide("/v1/charges", "amount=2000&currency=usd&source=tok_visa"),
                       .priced(PriceQuote(micros: MicroUSD(20_000_000), amountMinor: 2000, currency: "usd")))
        XCTAssertEqual(try decide("/v1/payment_intents", "currency=EUR&amount=1000&confirm=true"),
                       .priced(PriceQuote(micros: MicroUSD(11_000_000), amountMinor: 1000, currency: "eur")))
        XCTAssertEqual(try decide("/v1/transfers", "amount=500&currency=jpy&destination=acct_1"),
                       .priced(PriceQuote(micros: MicroUSD(3_350_000), amountMinor: 500, currency: "jpy")))
        XCTAssertEqual(try decide("/v1/payouts", "amount=1500&currency=kwd"),
                       .priced(PriceQuote(micros: MicroUSD(4_875_000), amountMinor: 1500, currency: "kwd")))
        XCTAssertEqual(try decide("/v1/topups", "amount=1&currency=usd"),
                       .priced(PriceQuote(micros: MicroUSD(10_000), amountMinor: 1, currency: "usd")))
        XCTAssertEqual(try decide("/v1/charges", "amount=0&currency=usd"),
                       .priced(PriceQuote(micros: .zero, amountMinor: 0, currency: "usd")))
    }

    func testMissingAmountOrCurrency() {
        assertError("/v1/charges", "currency=usd", code: "amount_required", contains: "amount")
        assertError("/v1/charges", "amount=&currency=usd", code: "amount_required")
        assertError("/v1/payment_intents", "amount=100&confirm=true", code: "amount_required", contains: "currency")
        assertError("/v1/transfers", "", code: "amount_required", contains: "transfers.create")
    }

    func testMalformedAmount() {
        for bad in ["12.50", "-5", "+5", "1e3", " 5", "5 ", "0x10", "99999999999999999999", "%C2%B9"] {
            assertError("/v1/charges", "amount=\(bad)&currency=usd", code: "invalid_request", field: "amount")
        }
    }

    func testRepeatedPricingParameterRejected() {
        assertError("/v1/charges", "amount=100&amount=100000&currency=usd", code: "invalid_request", field: "amount")
        assertError("/v1/charges", "amount=100&currency=jpy&currency=usd", code: "invalid_request", field: "currency")
    }

    func testUnknownCurrencyFailsClosed() {
        assertError("/v1/charges", "amount=100&currency=gbp", code: "currency_not_supported", contains: "KEYBRAKE_FX_RATES")
    }

    // MARK: free

    func testFreeRequests() throws {
        XCTAssertEqual(try decide("/v1/charges", method: "GET"), .free)
        XCTAssertEqual(try decide("/v1/charges/ch_1", method: "GET"), .free)
        XCTAssertEqual(try decide("/v1/payment_intents/pi_1/confirm", method: "get"), .free)
        XCTAssertEqual(try decide("/v1/customers/cus_1", method: "DELETE"), .free)
        XCTAssertEqual(try decide("/v1/customers", "email=a%40b.c"), .free)
        XCTAssertEqual(try decide("/v1/payment_methods/pm_1/attach", "customer=cus_1"), .free)
        XCTAssertEqual(try decide("/v1/payment_intents/pi_1", "amount=999999"), .free)  // update: priced at confirm
        XCTAssertEqual(try decide("/v1/payment_intents", "amount=5000&currency=usd"), .free)  // nothing moves until confirmed
        XCTAssertEqual(try decide("/v1/refunds/re_1", "metadata[a]=b"), .free)
        XCTAssertEqual(try decide("/v2/charges", "amount=1"), .free)
        XCTAssertEqual(try decide("/", ""), .free)
    }

    // MARK: look-ups

    func testConfirmAndInvoicePayLookUp() throws {
        XCTAssertEqual(try decide("/v1/payment_intents/pi_3MtwBw/confirm", "payment_method=pm_card_visa"),
                       .lookup(StripeLookup(path: "/v1/payment_intents/pi_3MtwBw", kind: .paymentIntentAmount, countedObject: "pi_3MtwBw")))
        XCTAssertEqual(try decide("/v1/invoices/in_1Mtx/pay", ""),
                       .lookup(StripeLookup(path: "/v1/invoices/in_1Mtx", kind: .invoiceAmountDue)))
        XCTAssertEqual(try decide("/v1/payment_intents/pi_1/increment_authorization", "amount=3000"),
                       .lookup(StripeLookup(path: "/v1/payment_intents/pi_1", kind: .paymentIntentAmount, amountOverride: 3000, countedObject: "pi_1")))
        assertError("/v1/payment_intents/pi_1/increment_authorization", "", code: "amount_required")
    }

    /// Captures, reversals and fee refunds move money: priced at the amount named, or the object's remainder.
    func testCapturesReversalsAndFeeRefundsArePriced() throws {
        XCTAssertEqual(try decide("/v1/payment_intents/pi_1/capture", "amount_to_capture=500"),
                       .lookup(StripeLookup(path: "/v1/payment_intents/pi_1", kind: .paymentIntentCapturable, amountOverride: 500, countedObject: "pi_1")))
        XCTAssertEqual(try decide("/v1/payment_intents/pi_1/capture", ""),
                       .lookup(StripeLookup(path: "/v1/payment_intents/pi_1", kind: .paymentIntentCapturable, countedObject: "pi_1")))
        XCTAssertEqual(try decide("/v1/charges/ch_1/capture", "amount=500"),
                       .lookup(StripeLookup(path: "/v1/charges/ch_1", kind: .chargeAmount, amountOverride: 500, countedObject: "ch_1")))
        XCTAssertEqual(try decide("/v1/transfers/tr_1/reversals", ""),
                       .lookup(StripeLookup(path: "/v1/transfers/tr_1", kind: .transferReversible)))
        XCTAssertEqual(try decide("/v1/application_fees/fee_1/refunds", "amount=300"),
                       .lookup(StripeLookup(path: "/v1/application_fees/fee_1", kind: .applicationFeeRefundable, amountOverride: 300)))
        XCTAssertEqual(try decide("/v1/payment_intents", "amount=5000&currency=usd&confirm=true"),
                       .priced(PriceQuote(micros: MicroUSD(50_000_000), amountMinor: 5000, currency: "usd")))
        XCTAssertEqual(try decide("/v1/treasury/outbound_payments", "amount=700&currency=usd&financial_account=fa_1"),
                       .priced(PriceQuote(micros: MicroUSD(7_000_000), amountMinor: 700, currency: "usd")))
        let transfer = #"{"id":"tr_1","amount":1000,"amount_reversed":250,"currency":"usd"}"#
        XCTAssertEqual(try pricer.priceLookup(StripeLookup(path: "/v1/transfers/tr_1", kind: .transferReversible), objectJSON: Data(transfer.utf8)),
                       PriceQuote(micros: MicroUSD(7_500_000), amountMinor: 750, currency: "usd"))
        let intent = #"{"id":"pi_1","amount":1000,"amount_capturable":800,"currency":"usd"}"#
        XCTAssertEqual(try pricer.priceLookup(StripeLookup(path: "/v1/payment_intents/pi_1", kind: .paymentIntentCapturable), objectJSON: Data(intent.utf8)),
                       PriceQuote(micros: MicroUSD(8_000_000), amountMinor: 800, currency: "usd"))
    }

    func testRefunds() throws {
        XCTAssertEqual(try decide("/v1/refunds", "charge=ch_1&amount=700&currency=usd"),
                       .priced(PriceQuote(micros: MicroUSD(7_000_000), amountMinor: 700, currency: "usd")))
        XCTAssertEqual(try decide("/v1/refunds", "charge=ch_1&amount=700"),
                       .lookup(StripeLookup(path: "/v1/charges/ch_1", kind: .chargeRefundable, amountOverride: 700)))
        XCTAssertEqual(try decide("/v1/refunds", "charge=ch_1"),
                       .lookup(StripeLookup(path: "/v1/charges/ch_1", kind: .chargeRefundable)))
        XCTAssertEqual(try decide("/v1/refunds", "payment_intent=pi_1"),
                       .lookup(StripeLookup(path: "/v1/payment_intents/pi_1", kind: .paymentIntentRefundable)))
        XCTAssertEqual(try decide("/v1/refunds", "payment_intent=pi_1&amount=250"),
                       .lookup(StripeLookup(path: "/v1/payment_intents/pi_1", kind: .paymentIntentRefundable, amountOverride: 250)))
        XCTAssertEqual(try decide("/v1/refunds", "payment_intent=pi_1&currency=usd"),
                       .lookup(StripeLookup(path: "/v1/payment_intents/pi_1", kind: .paymentIntentRefundable)))
        assertError("/v1/refunds", "amount=100", code: "amount_required")
        assertError("/v1/refunds", "reason=duplicate", code: "amount_required")
        assertError("/v1/refunds", "charge=ch_1&amount=1.5", code: "invalid_request", field: "amount")
    }

    func testLegacyChargeRefundRoutesArePriced() throws {
        XCTAssertEqual(try decide("/v1/charges/ch_9/refunds", "amount=100"),
                       .lookup(StripeLookup(path: "/v1/charges/ch_9", kind: .chargeRefundable, amountOverride: 100)))
        XCTAssertEqual(try decide("/v1/charges/ch_9/refund", ""),
                       .lookup(StripeLookup(path: "/v1/charges/ch_9", kind: .chargeRefundable)))
    }

    func testObjectIDsCannotInjectAPath() {
        for bad in ["ch_1/../../v1/payouts", "ch_1%2F..", "ch_1?expand[]=x", "ch_1#x", "ch-1", "ch%201", "ch_1/refunds", "ch_1."] {
            assertError("/v1/refunds", "charge=\(bad)", code: "invalid_request", field: "charge")
            assertError("/v1/refunds", "payment_intent=\(bad)&amount=5", code: "invalid_request", field: "payment_intent")
        }
        // A path id survives normalization only percent-encoded; it still has to be a plain id.
        assertError("/v1/payment_intents/pi%3F1/confirm", "", code: "invalid_request", field: "id")
        assertError("/v1/invoices/in~1/pay", "", code: "invalid_request", field: "id")
    }

    // MARK: pricing fetched objects

    private func quote(_ lookup: StripeLookup, _ json: String) throws -> PriceQuote {
        try pricer.priceLookup(lookup, objectJSON: Data(json.utf8))
    }

    func testPriceLookupPaymentIntent() throws {
        let pi = #"{"id":"pi_1","object":"payment_intent","amount":2000,"amount_received":0,"currency":"usd","status":"requires_confirmation","metadata":{}}"#
        XCTAssertEqual(try quote(StripeLookup(path: "/v1/payment_intents/pi_1", kind: .paymentIntentAmount), pi),
                       PriceQuote(micros: MicroUSD(20_000_000), amountMinor: 2000, currency: "usd"))
        XCTAssertEqual(try quote(StripeLookup(path: "/v1/payment_intents/pi_1", kind: .paymentIntentAmount, amountOverride: 3000), pi),
                       PriceQuote(micros: MicroUSD(30_000_000), amountMinor: 3000, currency: "usd"))
        let received = #"{"id":"pi_2","object":"payment_intent","amount":1200,"amount_received":1000,"currency":"kwd"}"#
        XCTAssertEqual(try quote(StripeLookup(path: "/v1/payment_intents/pi_2", kind: .paymentIntentRefundable), received),
                       PriceQuote(micros: MicroUSD(3_250_000), amountMinor: 1000, currency: "kwd"))
    }

    func testPriceLookupInvoice() throws {
        let invoice = #"{"id":"in_1","object":"invoice","amount_due":4999,"amount_paid":0,"amount_remaining":4999,"currency":"eur"}"#
        XCTAssertEqual(try quote(StripeLookup(path: "/v1/invoices/in_1", kind: .invoiceAmountDue), invoice),
                       PriceQuote(micros: MicroUSD(54_989_000), amountMinor: 4999, currency: "eur"))
    }

    func testPriceLookupCharge() throws {
        let charge = #"{"id":"ch_1","object":"charge","amount":5000,"amount_refunded":1500,"currency":"JPY","refunded":false}"#
        let lookup = StripeLookup(path: "/v1/charges/ch_1", kind: .chargeRefundable)
        XCTAssertEqual(try quote(lookup, charge), PriceQuote(micros: MicroUSD(23_450_000), amountMinor: 3500, currency: "jpy"))
        let over = #"{"amount":100,"amount_refunded":100,"currency":"usd"}"#
        XCTAssertEqual(try quote(lookup, over), PriceQuote(micros: .zero, amountMinor: 0, currency: "usd"))
        let explicit = StripeLookup(path: "/v1/charges/ch_1", kind: .chargeRefundable, amountOverride: 700)
        XCTAssertEqual(try quote(explicit, charge), PriceQuote(micros: MicroUSD(4_690_000), amountMinor: 700, currency: "jpy"))
    }

    func testPriceLookupMalformedIsUpstreamError() {
        let lookup = StripeLookup(path: "/v1/payment_intents/pi_1", kind: .paymentIntentAmount)
        for bad in ["not json", "[]", #"{"amount":2000}"#, #"{"currency":"usd"}"#, #"{"amount":"2000","currency":"usd"}"#,
                    #"{"amount":20.5,"currency":"usd"}"#, #"{"amount":-1,"currency":"usd"}"#, #"{"amount":true,"currency":"usd"}"#] {
            XCTAssertThrowsError(try quote(lookup, bad), bad) { error in
                XCTAssertEqual((error as! KeybrakeError).status, 502, bad)
                XCTAssertEqual((error as! KeybrakeError).code, "upstream_error", bad)
            }
        }
        XCTAssertThrowsError(try quote(lookup, #"{"amount":1,"currency":"gbp"}"#)) { error in
            XCTAssertEqual((error as! KeybrakeError).code, "currency_not_supported")
        }
    }
}
