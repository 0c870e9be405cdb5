import Foundation
import XCTest
@testable import Proxy

final class FormBodyTests: XCTestCase {
    func testDecodesPlusPercentAndKeepsBracketKeysLiteral() {
        let form = FormBody(parsing: Data("amount=2000&description=hello+world%21&note=a%20b%2Bc&metadata[order]=42&metadata%5Bcart%5D=7&name=%C3%A9".utf8))
        XCTAssertEqual(form.first("amount"), "2000")
        XCTAssertEqual(form.first("description"), "hello world!")
        XCTAssertEqual(form.first("note"), "a b+c")
        XCTAssertEqual(form.first("metadata[order]"), "42")
        XCTAssertEqual(form.first("metadata[cart]"), "7")
        XCTAssertEqual(form.first("name"), "é")
        XCTAssertNil(form.first("metadata"))
    }

    func testRepeatedKeysKeepOrder() {
        let form = FormBody(parsing: Data("expand[]=customer&expand[]=invoice&amount=1".utf8))
        XCTAssertEqual(form.all("expand[]"), ["customer", "invoice"])
        XCTAssertEqual(form.first("expand[]"), "customer")
        XCTAssertEqual(form.pairs.map(\.0), ["expand[]", "expand[]", "amount"])
        XCTAssertEqual(form.pairs.map(\.1), ["customer", "invoice", "1"])
    }

    func testEdgeCases() {
        let form = FormBody(parsing: Data("flag&&=v&bad=%zz%4&a=b=c".utf8))
        XCTAssertEqual(form.pairs.count, 4)
        XCTAssertEqual(form.first("flag"), "")
        XCTAssertEqual(form.first(""), "v")
        XCTAssertEqual(form.first("bad"), "%zz%4")
        XCTAssertEqual(form.first("a"), "b=c")
        XCTAssertTrue(FormBody(parsing: Data()).pairs.isEmpty)
    }
}

final class CanonicalBodyTests: XCTestCase {
    let form = "application/x-www-form-urlencoded"
    let json = "application/json; charset=utf-8"

    private func canon(_ type: String?, _ body: String) -> String {
        String(decoding: CanonicalBody.canonical(contentType: type, body: Data(body.utf8)), as: UTF8.self)
    }

    func testFormSortedAndReencoded() {
        XCTAssertEqual(canon(form, "currency=usd&amount=2000&metadata[x]=a+b&d=%7E"), "amount=2000&currency=usd&d=~&metadata%5Bx%5D=a%20b")
        XCTAssertEqual(canon(form, "b=2&a=1"), canon(form, "a=1&b=2"))
        XCTAssertEqual(canon(form, "d=a+b"), canon(form, "d=a%20b"))
        XCTAssertEqual(canon("Application/X-WWW-Form-Urlencoded", "b=2&a=1"), "a=1&b=2")
    }

    func testFormDifferentValuesDiffer() {
        XCTAssertNotEqual(canon(form, "amount=2000&currency=usd"), canon(form, "amount=2001&currency=usd"))
        XCTAssertNotEqual(canon(form, "a=1%262"), canon(form, "a=1&2"))  // an encoded & is data, not a separator
        XCTAssertNotEqual(canon(form, "a=%FE"), canon(form, "a=%FF"))     // invalid UTF-8 must not collapse to U+FFFD
    }

    func testRepeatedKeysKeepTheirRelativeOrder() {
        let one = "items[][price]=p_a&items[][quantity]=1&items[][price]=p_b&items[][quantity]=2"
        let two = "items[][price]=p_a&items[][quantity]=2&items[][price]=p_b&items[][quantity]=1"
        XCTAssertNotEqual(canon(form, one), canon(form, two))
        XCTAssertEqual(canon(form, "z=1&expand[]=a&expand[]=b"), "expand%5B%5D=a&expand%5B%5D=b&z=1")
    }

    func testJSONSortedCompactNumbersAsWritten() {
        let a = #"{ "to": ["a@x.io"], "amount": 1.50, "meta": {"z": null, "b": [3, 1e2, -0], "a": true} }"#
        let b = #"{"meta":{"a":true,"b":[3,1e2,-0],"z":null},"amount":1.50,"to":["a@x.io"]}"#
        XCTAssertEqual(canon(json, a), #"{"amount":1.50,"meta":{"a":true,"b":[3,1e2,-0],"z":null},"to":["a@x.io"]}"#)
        XCTAssertEqual(canon(json, a), canon(json, b))
        XCTAssertNotEqual(canon(json, #"{"amount":1.50}"#), canon(json, #"{"amount":1.51}"#))
        XCTAssertNotEqual(canon(json, #"[1,2]"#), canon(json, #"[2,1]"#))  // array order is data
    }

    func testJSONStringEscapesHaveOneSpelling() {
        XCTAssertEqual(canon(json, #"{"s":"\u00e9\/\ud83d\ude00"}"#), canon(json, #"{"s":"é/😀"}"#))
        XCTAssertEqual(canon(json, #"{"s":"a\"b\\c\nd\u0001"}"#), #"{"s":"a\"b\\c\nd\u0001"}"#)
    }

    func testInvalidOrOtherBodiesPassThrough() {
        XCTAssertEqual(canon(json, #"{"a": 1,}"#), #"{"a": 1,}"#)
        XCTAssertEqual(canon(json, #"{"s":"\ud800"}"#), #"{"s":"\ud800"}"#)  // lone surrogate
        XCTAssertEqual(canon(nil, "b=2&a=1"), "b=2&a=1")
        XCTAssertEqual(canon("text/plain", "b=2&a=1"), "b=2&a=1")
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        XCTAssertEqual(canon(json, deep), deep)
    }

    func testFingerprintInput() {
        let input = CanonicalBody.fingerprintInput(parts: ["ten_1", "stripe", "POST", "/v1/charges"], canonicalBody: Data("a=1".utf8))
        XCTAssertEqual(String(decoding: input, as: UTF8.self), "ten_1\nstripe\nPOST\n/v1/charges\na=1")
    }
}
