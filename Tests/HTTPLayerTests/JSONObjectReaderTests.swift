import Foundation
import KeybrakeCore
import XCTest

@testable import HTTPLayer

/// Admin request bodies: read without a fixed schema so that every refusal names its field, money read exactly from
/// the number as written, and text people read kept free of control and bidi-control characters.
final class JSONObjectReaderTests: XCTestCase {
    func reader(_ json: String) throws -> JSONObjectReader {
        guard case .object(let fields) = try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)) else {
            throw XCTSkip("not an object: \(json)")
        }
        return JSONObjectReader(fields)
    }

    func refusedField(_ json: String, _ read: (JSONObjectReader) throws -> Void) throws -> String? {
        let r = try reader(json)
        do {
            try read(r)
            return nil
        } catch let error as KeybrakeError {
            XCTAssertEqual(error.status, 400)
            XCTAssertEqual(error.code, "invalid_request")
            return error.field
        }
    }

    func testNumbersKeepTheirDecimalSpellingSoMoneyIsExact() throws {
        let r = try reader(#"{"a": 0.29, "b": 12, "c": "0.000001", "d": 1e2, "e": 19.99}"#)
        XCTAssertEqual(r.fields["a"], .number("0.29"))
        XCTAssertEqual(r.fields["b"], .number("12"))
        XCTAssertEqual(try r.usd("a", maxDecimals: 2), MicroUSD(290_000), "not 289,999 from a binary double")
        XCTAssertEqual(try r.usd("e", maxDecimals: 2), MicroUSD(19_990_000))
        XCTAssertEqual(try r.usd("c", maxDecimals: 6), MicroUSD(1), "a decimal string is read the same way")
        XCTAssertEqual(try r.usd("b", maxDecimals: 0), MicroUSD(12_000_000))
        XCTAssertNil(try r.usd("absent", maxDecimals: 2))
    }

    func testAmountsRefuseTooManyDecimalsNegativesAndOtherTypes() throws {
        XCTAssertEqual(try refusedField(#"{"cap": 1.005}"#) { _ = try $0.usd("cap", maxDecimals: 2) }, "cap")
        XCTAssertEqual(try refusedField(#"{"cap": -1}"#) { _ = try $0.usd("cap", maxDecimals: 2) }, "cap")
        XCTAssertEqual(try refusedField(#"{"cap": "12,50"}"#) { _ = try $0.usd("cap", maxDecimals: 2) }, "cap")
        XCTAssertEqual(try refusedField(#"{"cap": true}"#) { _ = try $0.usd("cap", maxDecimals: 2) }, "cap")
        XCTAssertEqual(try refusedField(#"{"n": 1.5}"#) { _ = try $0.int("n") }, "n", "not a whole number")
        XCTAssertEqual(try refusedField(#"{"ok": "yes"}"#) { _ = try $0.bool("ok") }, "ok")
        XCTAssertEqual(try refusedField(#"{"list": ["a", 1]}"#) { _ = try $0.stringArray("list") }, "list")
        XCTAssertEqual(try refusedField(#"{"at": "tomorrow"}"#) { _ = try $0.timestamp("at") }, "at")
    }

    func testUnknownFieldsAreRefusedByName() throws {
        // A typo such as daily_cap must not pass silently; the first unknown name (in sorted order) is named.
        XCTAssertEqual(try refusedField(#"{"label": "x", "zeta": 1, "daily_cap": 5}"#) {
            try $0.rejectUnknown(allowed: ["label", "daily_usd_cap"])
        }, "daily_cap")
        XCTAssertNil(try refusedField(#"{"label": "x"}"#) { try $0.rejectUnknown(allowed: ["label", "daily_usd_cap"]) })
    }

    func testStringsAreBoundedAndNullMeansAbsentUnlessRequired() throws {
        let r = try reader(#"{"s": "abc", "n": null, "nul": "a\u0000b"}"#)
        XCTAssertEqual(try r.string("s", maxLength: 3), "abc")
        XCTAssertNil(try r.string("n"))
        XCTAssertTrue(r.isNull("n"))
        XCTAssertFalse(r.isNull("absent"))
        XCTAssertTrue(r.has("n"))
        XCTAssertEqual(try refusedField(#"{"s": "abcd"}"#) { _ = try $0.string("s", maxLength: 3) }, "s")
        XCTAssertEqual(try refusedField(#"{"n": null}"#) { _ = try $0.string("n", required: true) }, "n")
        XCTAssertEqual(try refusedField(#"{"nul": "a\u0000b"}"#) { _ = try $0.string("nul") }, "nul", "Postgres text cannot hold NUL")
        XCTAssertEqual(try refusedField(#"{"s": 5}"#) { _ = try $0.string("s") }, "s")
    }

    func testTextPeopleReadRefusesControlAndBidiControlCharacters() throws {
        XCTAssertEqual(try reader(#"{"label": "billing agent · été 💸"}"#).displayText("label"), "billing agent · été 💸")
        for (name, scalar) in [("RLO", "\\u202e"), ("LRI", "\\u2066"), ("ALM", "\\u061c"), ("BEL", "\\u0007"), ("DEL", "\\u007f"), ("C1", "\\u0085"), ("newline", "\\n")] {
            let json = #"{"label": "invoice"# + scalar + #"txt.exe"}"#
            var message = ""
            XCTAssertEqual(try refusedField(json) {
                do { _ = try $0.displayText("label") } catch { message = (error as? KeybrakeError)?.message ?? ""; throw error }
            }, "label", name)
            XCTAssertTrue(message.contains("U+"), "the message names the character: \(message)")
        }
    }
}
