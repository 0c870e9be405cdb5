import KeybrakeCore
import XCTest

final class PathNormalizerTests: XCTestCase {
    func normalized(_ s: String) -> String? { try? PathNormalizer.normalize(s).get() }
    func rejection(_ s: String) -> PathNormalizer.Rejection? {
        if case .failure(let r) = PathNormalizer.normalize(s) { return r }
        return nil
    }

    func testNormalizesEncodingsAndStripsQuery() {
        XCTAssertEqual(normalized("/v1/charges?limit=3"), "/v1/charges")
        XCTAssertEqual(normalized("/v1/%63harges"), "/v1/charges", "encoded unreserved characters are decoded")
        XCTAssertEqual(normalized("/v1/charges/ch_1%7e"), "/v1/charges/ch_1~")
        XCTAssertEqual(normalized("/v1/customers/a%2cb"), "/v1/customers/a%2Cb", "reserved escapes stay encoded, upper-cased")
        XCTAssertEqual(normalized("/"), "/")
    }

    func testRejectsAmbiguousPaths() {
        XCTAssertEqual(rejection("/v1/charges/../refunds"), .dotSegment)
        XCTAssertEqual(rejection("/v1/charges/./x"), .dotSegment)
        XCTAssertEqual(rejection("/v1/charges/%2e%2e/refunds"), .dotSegment)
        XCTAssertEqual(rejection("/v1/charges/%2E/refunds"), .dotSegment)
        XCTAssertEqual(rejection("/v1/charges%2Frefunds"), .encodedSlash)
        XCTAssertEqual(rejection("/v1/charges%2frefunds"), .encodedSlash)
        XCTAssertEqual(rejection("/v1/charges%5Crefunds"), .encodedSlash)
        XCTAssertEqual(rejection("/v1//charges"), .emptySegment)
        XCTAssertEqual(rejection("/v1/charges/"), .emptySegment)
        XCTAssertEqual(rejection("/v1/char%zzges"), .badEncoding)
        XCTAssertEqual(rejection("/v1/charges%"), .badEncoding)
        XCTAssertEqual(rejection("/v1/char\\ges"), .forbiddenCharacter)
        XCTAssertEqual(rejection("/v1/charges%00"), .forbiddenCharacter)
        XCTAssertEqual(rejection("v1/charges"), .notAbsolute)
        XCTAssertEqual(rejection(""), .empty)
    }
}

final class EndpointPatternTests: XCTestCase {
    func pattern(_ s: String, _ vendor: Vendor = .stripe) throws -> EndpointPattern { try EndpointPattern.parse(s, vendor: vendor) }

    func testWildcardsMatchSegments() throws {
        let one = try pattern("GET /v1/charges/*")
        XCTAssertTrue(one.matches(method: "GET", normalizedPath: "/v1/charges/ch_123"))
        XCTAssertFalse(one.matches(method: "GET", normalizedPath: "/v1/charges"))
        XCTAssertFalse(one.matches(method: "GET", normalizedPath: "/v1/charges/ch_123/refunds"))
        XCTAssertFalse(one.matches(method: "POST", normalizedPath: "/v1/charges/ch_123"))

        let rest = try pattern("POST /v1/charges/**")
        XCTAssertTrue(rest.matches(method: "POST", normalizedPath: "/v1/charges"))
        XCTAssertTrue(rest.matches(method: "POST", normalizedPath: "/v1/charges/ch_1/capture"))
        XCTAssertFalse(rest.matches(method: "POST", normalizedPath: "/v1/refunds"))

        let exact = try pattern("post /v1/charges")
        XCTAssertEqual(exact.method, "POST")
        XCTAssertTrue(exact.matches(method: "POST", normalizedPath: "/v1/charges"))
        XCTAssertFalse(exact.matches(method: "POST", normalizedPath: "/V1/Charges"), "paths are case-sensitive")
        XCTAssertFalse(exact.matches(method: "POST", normalizedPath: "/v1/charges/x"))

        let anyMethod = try pattern("* /v1/balance")
        XCTAssertTrue(anyMethod.matches(method: "DELETE", normalizedPath: "/v1/balance"))
    }

    func testStripeOperationAliases() throws {
        XCTAssertEqual(try pattern("charges.create").canonical, "POST /v1/charges")
        XCTAssertEqual(try pattern("charges.retrieve").canonical, "GET /v1/charges/*")
        XCTAssertEqual(try pattern("refunds.create").canonical, "POST /v1/refunds")
        XCTAssertEqual(try pattern("customers.list").canonical, "GET /v1/customers")
        XCTAssertEqual(try pattern("payment_intents.confirm").canonical, "POST /v1/payment_intents/*/confirm")
        XCTAssertEqual(try pattern("invoices.pay").canonical, "POST /v1/invoices/*/pay")
        XCTAssertEqual(try pattern("checkout.sessions.create").canonical, "POST /v1/checkout/sessions")
        XCTAssertEqual(try pattern("invoice_items.create").canonical, "POST /v1/invoiceitems")
        XCTAssertThrowsError(try pattern("charges.explode"))
        XCTAssertThrowsError(try pattern("widgets.create"))
        XCTAssertThrowsError(try pattern("charges.create", .twilio), "aliases exist only for Stripe")
    }

    func testOperationNamesForErrors() {
        XCTAssertEqual(StripeOperations.operationName(method: "POST", normalizedPath: "/v1/refunds"), "refunds.create")
        XCTAssertEqual(StripeOperations.operationName(method: "GET", normalizedPath: "/v1/charges/ch_1"), "charges.retrieve")
        XCTAssertEqual(StripeOperations.operationName(method: "POST", normalizedPath: "/v1/payment_intents/pi_1/confirm"), "payment_intents.confirm")
        XCTAssertEqual(StripeOperations.operationName(method: "GET", normalizedPath: "/v1/customers"), "customers.list")
        XCTAssertEqual(StripeOperations.operationName(method: "POST", normalizedPath: "/v1/checkout/sessions"), "checkout.sessions.create")
        XCTAssertNil(StripeOperations.operationName(method: "GET", normalizedPath: "/v2/unknown"))
    }

    func testMalformedPatternsAreRejected() {
        for bad in ["", "POST", "FETCH /v1/charges", "POST v1/charges", "POST /v1/**/x", "POST /v1/char*", "POST /v1//x",
                    "POST /v1/charges?x=1", "POST /v1/../refunds", "POST  /v1/charges extra"] {
            XCTAssertThrowsError(try pattern(bad), bad)
        }
    }
}
