import Foundation
import HTTPTypes
import KeybrakeCore
import NIOCore
import XCTest
@testable import Proxy

/// The adapters' reading rules, one rule per test (the HTTP behaviour is in ProxyReadingTests).
final class RequestReadingTests: XCTestCase {
    let stripe = StripeAdapter(pricer: StripePricer())
    let twilio = TwilioAdapter(pricer: TwilioPricer())
    let resend = ResendAdapter(pricer: ResendPricer())
    let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]

    func refusal(_ body: @autoclosure () throws -> VendorRequest) -> KeybrakeError? {
        do { _ = try body(); return nil } catch { return error as? KeybrakeError }
    }

    func testWellFormedNamesAreBaseThenBracketedKeys() {
        for good in ["amount", "metadata[order]", "items[0][price]", "expand[]", "a[b][]"] {
            XCTAssertTrue(RequestReading.isWellFormedName(good), good)
        }
        for bad in ["[amount]", "amount]", "]amount", "amount[x", "a[b]c", "a[[b]]", "", "a]b["] {
            XCTAssertFalse(RequestReading.isWellFormedName(bad), bad)
        }
    }

    func testStrictFormDecodesAsTheVendorDoesAndRefusesAmbiguity() throws {
        let read = try RequestReading.strictForm(Data("amoun%74=5&metadata%5Bo%5D=a+b&expand[]=x&expand[]=y".utf8), where: "body", repeatable: { _ in false })
        XCTAssertEqual(read.first("amount"), "5")
        XCTAssertEqual(read.first("metadata[o]"), "a b")
        XCTAssertEqual(read.all("expand[]"), ["x", "y"])
        for bad in ["amount=1&amount=2", "amount=1&amoun%74=2", "a=1;b=2", "a=1 ", "a=%g1", "a=%1", "flag", "[amount]=1", "a=\u{7f}"] {
            XCTAssertThrowsError(try RequestReading.strictForm(Data(bad.utf8), where: "body", repeatable: { _ in false }), bad)
        }
        XCTAssertNoThrow(try RequestReading.strictForm(Data("MediaUrl=a&MediaUrl=b".utf8), where: "body", repeatable: { $0 == "MediaUrl" }))
    }

    func testStripeReadsAPostsBodyADeletesQueryAndNothingElse() throws {
        XCTAssertEqual(refusal(try stripe.read(method: "POST", path: "/v1/charges", query: "confirm=true", headers: form, body: Data("amount=1".utf8)))?.field, "query")
        let delete = try stripe.read(method: "DELETE", path: "/v1/subscriptions/sub_1", query: "invoice_now=true", headers: [:], body: Data())
        XCTAssertEqual(delete.parameters.first("invoice_now"), "true")
        XCTAssertEqual(delete.upstreamQuery, "invoice_now=true")
        XCTAssertNotNil(refusal(try stripe.read(method: "DELETE", path: "/v1/subscriptions/sub_1", query: nil, headers: form, body: Data("invoice_now=true".utf8))))
        XCTAssertNotNil(refusal(try stripe.read(method: "GET", path: "/v1/charges", query: nil, headers: form, body: Data("a=1".utf8))))
        for type in ["multipart/form-data; boundary=x", "text/plain", "application/json"] {
            XCTAssertEqual(refusal(try stripe.read(method: "POST", path: "/v1/charges", query: nil, headers: [.contentType: type], body: Data("amount=1".utf8)))?.field,
                           "Content-Type", type)
        }
        XCTAssertNotNil(refusal(try stripe.read(method: "POST", path: "/v1/charges", query: nil, headers: [:], body: Data("amount=1".utf8))), "untyped")
        var gzip = form
        gzip[.contentEncoding] = "gzip"
        XCTAssertThrowsError(try stripe.readHeaders(gzip)) { XCTAssertEqual(($0 as? KeybrakeError)?.field, "Content-Encoding") }
        var twoAccounts = form
        twoAccounts.append(HTTPField(name: .stripeAccount, value: "acct_1"))
        twoAccounts.append(HTTPField(name: .stripeAccount, value: "acct_2"))
        XCTAssertThrowsError(try stripe.readHeaders(twoAccounts))
        XCTAssertThrowsError(try stripe.readHeaders([.stripeContext: "acct_1,acct_2"]))
        XCTAssertNoThrow(try stripe.readHeaders(form))
        XCTAssertNoThrow(try stripe.read(method: "POST", path: "/v2/core/accounts", query: nil, headers: [.contentType: "application/json"], body: Data("{\"a\":1}".utf8)))
        XCTAssertEqual(stripe.accountsNamed([.stripeAccount: "acct_1", .stripeContext: "acct_2/acct_3"]), ["acct_1", "acct_2", "acct_3"])
    }

    func testTwilioAndResendRules() throws {
        XCTAssertNotNil(refusal(try twilio.read(method: "POST", path: "/2010-04-01/Accounts/AC1/Messages.json", query: nil, headers: form,
                                                body: Data("To=%2B1555&To=%2B882123&Body=x".utf8))), "a repeated To")
        XCTAssertNoThrow(try twilio.read(method: "POST", path: "/2010-04-01/Accounts/AC1/Messages.json", query: nil, headers: form,
                                         body: Data("To=%2B1555&MediaUrl=a&MediaUrl=b".utf8)))
        XCTAssertNotNil(refusal(try twilio.read(method: "POST", path: "/2010-04-01/Accounts/AC1/Messages.json", query: "To=%2B882", headers: form, body: Data())))
        let json: HTTPFields = [.contentType: "application/json"]
        XCTAssertNoThrow(try resend.read(method: "GET", path: "/emails", query: "limit=3", headers: json, body: Data("{}".utf8)), "resend-python's GET")
        XCTAssertNotNil(refusal(try resend.read(method: "POST", path: "/emails", query: nil, headers: json, body: Data("{\"to\":\"a\",\"to\":\"b\"}".utf8))))
        XCTAssertNotNil(refusal(try resend.read(method: "POST", path: "/emails", query: nil, headers: json, body: Data("[{\"a\":{\"x\":1,\"x\":2}}]".utf8))))
        XCTAssertNotNil(refusal(try resend.read(method: "POST", path: "/emails", query: "x=1", headers: json, body: Data("{}".utf8))))
        XCTAssertNotNil(refusal(try resend.read(method: "POST", path: "/emails", query: nil, headers: json, body: Data("{".utf8))))
    }

    func testSecretsAreMaskedInWholeAnswersAndAcrossStreamedChunks() {
        let secret = "sk_live_0123456789abcdefghijklmnop"
        let mask = SecretMask(secrets: [secret, "short"], fields: ["auth_token"])
        let whole = ByteBuffer(string: #"{"auth_token" : "abc\"def", "note": "\#(secret)", "short": "short"}"#)
        let masked = String(buffer: mask.masked(whole)!)
        XCTAssertFalse(masked.contains(secret))
        XCTAssertFalse(masked.contains("abc"))
        XCTAssertTrue(masked.contains("\"short\""), "a secret under 8 bytes is not looked for: \(masked)")
        XCTAssertEqual(masked.utf8.count, whole.readableBytes, "same length")
        XCTAssertNil(mask.masked(ByteBuffer(string: "{\"ok\":1}")), "nothing to mask: passed on as it is")
        let text = "xx" + secret + "yy" + secret
        for split in 1..<text.utf8.count {
            var stream = SecretMask.Stream(mask: mask)
            let bytes = Array(text.utf8)
            var out = stream.next(ByteBuffer(bytes: bytes[..<split]))
            var rest = stream.next(ByteBuffer(bytes: bytes[split...]))
            out.writeBuffer(&rest)
            var tail = stream.finish()
            out.writeBuffer(&tail)
            XCTAssertEqual(String(buffer: out), "xx" + String(repeating: "*", count: secret.count) + "yy" + String(repeating: "*", count: secret.count), "split at \(split)")
        }
    }
}
