import Foundation
import KeybrakeCore
import XCTest
@testable import Proxy

final class CurrencyTests: XCTestCase {
    func testExponents() {
        XCTAssertEqual(CurrencyExponent.exponent("usd"), 2)
        XCTAssertEqual(CurrencyExponent.exponent("JPY"), 0)
        XCTAssertEqual(CurrencyExponent.exponent("krw"), 0)
        XCTAssertEqual(CurrencyExponent.exponent("Kwd"), 3)
        XCTAssertEqual(CurrencyExponent.exponent("bhd"), 3)
        XCTAssertEqual(CurrencyExponent.exponent("eur"), 2)
    }

    func testUSDCentsAreExact() throws {
        XCTAssertEqual(try FXTable.default.microUSD(amountMinor: 1000, currency: "usd"), MicroUSD(10_000_000))
        XCTAssertEqual(try FXTable.default.microUSD(amountMinor: 1, currency: "USD"), MicroUSD(10_000))
        XCTAssertEqual(try FXTable.default.microUSD(amountMinor: 0, currency: "usd"), MicroUSD.zero)
    }

    func testZeroAndThreeDecimalCurrencies() throws {
        let fx = FXTable(rates: ["JPY": 6_700, "kwd": 3_250_000, "krw": 720])
        XCTAssertEqual(try fx.microUSD(amountMinor: 500, currency: "jpy"), MicroUSD(3_350_000))   // ¥500 = $3.35
        XCTAssertEqual(try fx.microUSD(amountMinor: 1_500, currency: "KWD"), MicroUSD(4_875_000)) // 1.500 KD
        XCTAssertEqual(try fx.microUSD(amountMinor: 50_000, currency: "krw"), MicroUSD(36_000_000))
        XCTAssertEqual(fx.rates["usd"], 1_000_000)
    }

    func testRoundsUp() throws {
        let fx = FXTable(rates: ["eur": 1_170_001, "kwd": 3_250_001, "tiny": 1])
        XCTAssertEqual(try fx.microUSD(amountMinor: 1, currency: "eur"), MicroUSD(11_701))  // 11_700.01 → up
        XCTAssertEqual(try fx.microUSD(amountMinor: 1, currency: "kwd"), MicroUSD(3_251))   // 3_250.001 → up
        XCTAssertEqual(try fx.microUSD(amountMinor: 100, currency: "eur"), MicroUSD(1_170_001))
        XCTAssertEqual(try fx.microUSD(amountMinor: 1, currency: "tiny"), MicroUSD(1))     // 0.01 µ$ is still spend
    }

    func testUnknownCurrencyFailsClosed() {
        XCTAssertThrowsError(try FXTable.default.microUSD(amountMinor: 100, currency: "xyz")) { error in
            let e = error as! KeybrakeError
            XCTAssertEqual(e.status, 400)
            XCTAssertEqual(e.code, "currency_not_supported")
            XCTAssertTrue(e.message.contains("xyz"), e.message)
            XCTAssertTrue(e.message.contains("KEYBRAKE_FX_RATES"), e.message)
        }
        // A non-positive rate is dropped rather than pricing money at nothing.
        XCTAssertThrowsError(try FXTable(rates: ["eur": 0]).microUSD(amountMinor: 100, currency: "eur"))
    }

    func testNegativeAmountRejected() {
        XCTAssertThrowsError(try FXTable.default.microUSD(amountMinor: -1, currency: "usd")) { error in
            XCTAssertEqual((error as! KeybrakeError).code, "invalid_request")
            XCTAssertEqual((error as! KeybrakeError).field, "amount")
        }
    }

    func testOverflowSafe() throws {
        // 9e14 cents × 1e6 overflows 64 bits before dividing by 100; the result fits.
        XCTAssertEqual(try FXTable.default.microUSD(amountMinor: 900_000_000_000_000, currency: "usd"), MicroUSD(9_000_000_000_000_000_000))
        XCTAssertThrowsError(try FXTable.default.microUSD(amountMinor: 1_000_000_000_000_000, currency: "usd")) { error in
            XCTAssertEqual((error as! KeybrakeError).code, "invalid_request")
        }
        XCTAssertThrowsError(try FXTable.default.microUSD(amountMinor: .max, currency: "jpy"))
    }

    func testParsingConfigOverridesAndAdds() throws {
        let fx = try FXTable(parsing: " eur=1.08, GBP = 1.27 ,xyz=0.000001,", base: .default)
        XCTAssertEqual(fx.rates["eur"], 1_080_000)
        XCTAssertEqual(fx.rates["gbp"], 1_270_000)
        XCTAssertEqual(fx.rates["xyz"], 1)
        XCTAssertEqual(fx.rates["jpy"], FXTable.defaultRates["jpy"])
        XCTAssertEqual(try fx.microUSD(amountMinor: 250, currency: "EUR"), MicroUSD(2_700_000))
        XCTAssertEqual(try FXTable(parsing: "").rates, FXTable.default.rates)
        XCTAssertEqual(try FXTable(parsing: "usd=1.000").rates["usd"], 1_000_000)
    }

    func testParsingConfigRejectsBadEntries() {
        for bad in ["eur", "eur=abc", "eur=0", "eur=-1", "eur=1.0000001", "euro=1", "e1=1", "usd=2"] {
            XCTAssertThrowsError(try FXTable(parsing: bad), bad) { error in
                XCTAssertEqual((error as! KeybrakeError).field, "KEYBRAKE_FX_RATES", bad)
            }
        }
    }

    func testDefaultTableCoversMajorCurrencies() {
        for code in ["usd", "eur", "gbp", "cad", "aud", "jpy", "chf", "sek", "nok", "dkk", "nzd", "sgd", "hkd",
                     "mxn", "brl", "inr", "krw", "kwd", "bhd", "pln", "zar", "clp"] {
            XCTAssertGreaterThan(FXTable.defaultRates[code] ?? 0, 0, code)
        }
        XCTAssertEqual(FXTable.defaultRates["usd"], 1_000_000)
    }
}
