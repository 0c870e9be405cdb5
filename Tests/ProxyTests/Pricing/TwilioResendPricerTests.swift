import Foundation
import KeybrakeCore
import XCTest
@testable import Proxy

final class TwilioPricerTests: XCTestCase {
    let messages = "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json"

    private func form(_ pairs: [(String, String)]) -> FormBody {
        FormBody(parsing: Data(pairs.map { FormBody.encodedForTest($0.0) + "=" + FormBody.encodedForTest($0.1) }.joined(separator: "&").utf8))
    }

    func testGSMSegments() {
        XCTAssertEqual(TwilioPricer.segments(body: ""), 1)
        XCTAssertEqual(TwilioPricer.segments(body: "Hello @£$ ÄÖÑÜ§¿"), 1)
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "a", count: 160)), 1)
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "a", count: 161)), 2)
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "a", count: 306)), 2)
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "a", count: 307)), 3)
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "\r\n", count: 80)), 1)  // two septets per CRLF
    }

    func testExtensionCharactersCountTwo() {
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "€", count: 80)), 1)       // 160 septets
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "€", count: 81)), 2)       // 162
        XCTAssertEqual(TwilioPricer.segments(body: "^" + String(repeating: "a", count: 159)), 2)  // 161
        XCTAssertEqual(TwilioPricer.segments(body: "{}" + String(repeating: "a", count: 156)), 1) // 160
    }

    func testUCS2Segments() {
        XCTAssertEqual(TwilioPricer.segments(body: "Your order shipped 👋"), 1)
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "ж", count: 70)), 1)
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "ж", count: 71)), 2)
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "ж", count: 134)), 2)
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "ж", count: 135)), 3)
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "😀", count: 35)), 1)  // 70 UTF-16 units
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "😀", count: 36)), 2)
        // One non-GSM character turns the whole message into UCS-2.
        XCTAssertEqual(TwilioPricer.segments(body: String(repeating: "a", count: 70) + "ç"), 2)
    }

    func testPricesSMSAndMMS() {
        let pricer = TwilioPricer()
        XCTAssertEqual(pricer.price(method: "POST", normalizedPath: messages, form: form([("To", "+15551234567"), ("Body", "hi")])),
                       .priced(PriceQuote(micros: MicroUSD(11_300))))
        XCTAssertEqual(pricer.price(method: "POST", normalizedPath: messages, form: form([("To", "+15551234567"), ("Body", String(repeating: "a", count: 161))])),
                       .priced(PriceQuote(micros: MicroUSD(22_600))))
        XCTAssertEqual(pricer.price(method: "POST", normalizedPath: messages, form: form([("To", "+1555")])),
                       .priced(PriceQuote(micros: MicroUSD(11_300))))
        XCTAssertEqual(pricer.price(method: "POST", normalizedPath: messages,
                                    form: form([("Body", String(repeating: "a", count: 400)), ("MediaUrl", "https://x.io/a.png")])),
                       .priced(PriceQuote(micros: MicroUSD(22_000))))
        let custom = TwilioPricer(pricePerSegment: MicroUSD(10_000), carrierFeePerSegment: MicroUSD(2_500), pricePerMMS: MicroUSD(30_000))
        XCTAssertEqual(custom.price(method: "POST", normalizedPath: messages, form: form([("To", "+12125550100"), ("Body", String(repeating: "a", count: 307))])),
                       .priced(PriceQuote(micros: MicroUSD(37_500))))
        // Several Body values: the longest is priced.
        XCTAssertEqual(pricer.price(method: "POST", normalizedPath: messages, form: form([("To", "+15551234567"), ("Body", "a"), ("Body", String(repeating: "b", count: 200))])),
                       .priced(PriceQuote(micros: MicroUSD(22_600))))
    }

    /// A destination outside the price table (or none) is reserved at the high international estimate, so a cap is
    /// not overshot by an estimate far below the real price (an SMS to the UK costs ~5x a US one, some routes 50x).
    func testInternationalDestinationsAreReservedHigh() {
        var pricer = TwilioPricer()
        XCTAssertEqual(pricer.price(method: "POST", normalizedPath: messages, form: form([("To", "+447700900123"), ("Body", "hi")])),
                       .priced(PriceQuote(micros: MicroUSD(253_000))))
        XCTAssertEqual(pricer.price(method: "POST", normalizedPath: messages, form: form([("Body", "hi")])),
                       .priced(PriceQuote(micros: MicroUSD(253_000))))
        pricer.destinationPerSegment["+44"] = MicroUSD(40_000)
        XCTAssertEqual(pricer.price(method: "POST", normalizedPath: messages, form: form([("To", "+447700900123"), ("Body", "hi")])),
                       .priced(PriceQuote(micros: MicroUSD(43_000))))
    }

    func testOtherTwilioRequestsAreFree() {
        let pricer = TwilioPricer()
        XCTAssertEqual(pricer.price(method: "GET", normalizedPath: messages, form: form([])), .free)
        XCTAssertEqual(pricer.price(method: "POST", normalizedPath: "/2010-04-01/Accounts/AC1/Messages/SM1.json", form: form([("Body", "")])), .free)
        XCTAssertEqual(pricer.price(method: "POST", normalizedPath: "/2010-04-01/Accounts/AC1/Calls.json", form: form([])), .free)
    }

    func testSettledPrice() {
        func settled(_ json: String) -> MicroUSD? { TwilioPricer.settledPrice(responseJSON: Data(json.utf8)) }
        XCTAssertEqual(settled(#"{"sid":"SM1","price":"-0.00830","price_unit":"USD","status":"sent"}"#), MicroUSD(8_300))
        XCTAssertEqual(settled(#"{"price":"-0.0166","price_unit":"usd"}"#), MicroUSD(16_600))
        XCTAssertEqual(settled(#"{"price":"0.0075"}"#), MicroUSD(7_500))
        XCTAssertEqual(settled(#"{"price":-0.0083,"price_unit":"USD"}"#), MicroUSD(8_300))
        XCTAssertNil(settled(#"{"price":null,"price_unit":"USD"}"#))
        XCTAssertNil(settled(#"{"status":"queued"}"#))
        XCTAssertNil(settled(#"{"price":"-0.00830","price_unit":"EUR"}"#))
        XCTAssertNil(settled(#"{"price":"-0.00830","price_unit":7}"#))
        XCTAssertNil(settled(#"{"price":"abc","price_unit":"USD"}"#))
        XCTAssertNil(settled(#"{"price":"-0.0000001","price_unit":"USD"}"#))
        XCTAssertNil(settled("<html>"))
    }
}

final class ResendPricerTests: XCTestCase {
    func testSingleAndBatch() throws {
        let pricer = ResendPricer()
        XCTAssertEqual(try pricer.price(method: "POST", normalizedPath: "/emails", jsonBody: Data(#"{"to":["a@x.io"]}"#.utf8)),
                       .priced(PriceQuote(micros: MicroUSD(900))))
        let batch = #"[{"to":"a@x.io","subject":"1"},{"to":"b@x.io","subject":"2"},{"to":"c@x.io","subject":"3"}]"#
        XCTAssertEqual(try pricer.price(method: "POST", normalizedPath: "/emails/batch", jsonBody: Data(batch.utf8)),
                       .priced(PriceQuote(micros: MicroUSD(2_700))))
        XCTAssertEqual(try ResendPricer(pricePerEmail: MicroUSD(1_000)).price(method: "post", normalizedPath: "/emails/batch", jsonBody: Data(batch.utf8)),
                       .priced(PriceQuote(micros: MicroUSD(3_000))))
    }

    func testBatchMustBeAnArray() {
        for bad in [#"{"to":"a@x.io"}"#, "not json", ""] {
            XCTAssertThrowsError(try ResendPricer().price(method: "POST", normalizedPath: "/emails/batch", jsonBody: Data(bad.utf8)), bad) { error in
                XCTAssertEqual((error as! KeybrakeError).code, "invalid_request")
                XCTAssertEqual((error as! KeybrakeError).status, 400)
            }
        }
    }

    func testOtherResendRequestsAreFree() throws {
        let pricer = ResendPricer()
        XCTAssertEqual(try pricer.price(method: "GET", normalizedPath: "/emails/e_1", jsonBody: Data()), .free)
        XCTAssertEqual(try pricer.price(method: "GET", normalizedPath: "/emails", jsonBody: Data()), .free)
        XCTAssertEqual(try pricer.price(method: "POST", normalizedPath: "/domains", jsonBody: Data("{}".utf8)), .free)
    }
}

extension FormBody {
    static func encodedForTest(_ text: String) -> String {
        var out: [UInt8] = []
        PercentEncoding.encode(Array(text.utf8), into: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
