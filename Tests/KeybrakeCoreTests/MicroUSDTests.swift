import KeybrakeCore
import XCTest

final class MicroUSDTests: XCTestCase {
    func testParsesDecimalDollarsExactly() {
        XCTAssertEqual(MicroUSD.parse(dollars: "500"), MicroUSD(500_000_000))
        XCTAssertEqual(MicroUSD.parse(dollars: "0.29"), MicroUSD(290_000))
        XCTAssertEqual(MicroUSD.parse(dollars: "0.0083"), MicroUSD(8_300))
        XCTAssertEqual(MicroUSD.parse(dollars: "12.50", maxDecimals: 1), MicroUSD(12_500_000), "trailing zeros are not precision")
        XCTAssertEqual(MicroUSD.parse(dollars: "1e2"), MicroUSD(100_000_000))
        XCTAssertEqual(MicroUSD.parse(dollars: "1e-05"), MicroUSD(10))
        XCTAssertEqual(MicroUSD.parse(dollars: " 7 "), MicroUSD(7_000_000))
        XCTAssertEqual(MicroUSD.parse(dollars: "0"), MicroUSD.zero)
    }

    func testRejectsTooPreciseMalformedNegativeAndOverflowingAmounts() {
        XCTAssertNil(MicroUSD.parse(dollars: "10.001", maxDecimals: 2))
        XCTAssertNil(MicroUSD.parse(dollars: "0.0000001"), "below one micro-dollar")
        XCTAssertNil(MicroUSD.parse(dollars: "-5"))
        XCTAssertEqual(MicroUSD.parse(dollars: "-5", allowNegative: true), MicroUSD(-5_000_000))
        XCTAssertNil(MicroUSD.parse(dollars: "1.2.3"))
        XCTAssertNil(MicroUSD.parse(dollars: "abc"))
        XCTAssertNil(MicroUSD.parse(dollars: ""))
        XCTAssertNil(MicroUSD.parse(dollars: "."))
        XCTAssertNil(MicroUSD.parse(dollars: "99999999999999999999"))
        XCTAssertNil(MicroUSD.parse(dollars: "1e40"))
        XCTAssertNil(MicroUSD.parse(dollars: "nan"))
    }

    func testFormatsDollarStrings() {
        XCTAssertEqual(MicroUSD(500_000_000).dollarString, "500.00")
        XCTAssertEqual(MicroUSD(290_000).dollarString, "0.29")
        XCTAssertEqual(MicroUSD(8_300).dollarString, "0.0083")
        XCTAssertEqual(MicroUSD(1).dollarString, "0.000001")
        XCTAssertEqual(MicroUSD(-12_345_000).dollarString, "-12.345")
        XCTAssertEqual(MicroUSD(290_000).description, "$0.29")
    }
}
