import KeybrakeCore
import XCTest

final class DurationAndHexTests: XCTestCase {
    func testDurationUnitsTruncateTowardZero() {
        let d: Duration = .seconds(2) + .nanoseconds(1_999_999)
        XCTAssertEqual(d.milliseconds, 2_001)
        XCTAssertEqual(d.microseconds, 2_001_999)
        XCTAssertEqual(d.nanoseconds, 2_001_999_999)
        XCTAssertEqual(d.timeInterval, 2.001999999, accuracy: 1e-12)
        XCTAssertEqual(Duration.milliseconds(-1_500).milliseconds, -1_500)
        XCTAssertEqual(Duration.zero.microseconds, 0)
    }

    func testHexDigitsBothWays() {
        XCTAssertEqual(Hex.lowercase([0x00, 0x0f, 0xa5, 0xff]), "000fa5ff")
        for byte in UInt8.min...UInt8.max {
            var out: [UInt8] = []
            Hex.append(byte, uppercase: byte % 2 == 0, to: &out)
            XCTAssertEqual(Hex.value(out[0]).map { $0 << 4 | Hex.value(out[1])! }, byte)
        }
        XCTAssertNil(Hex.value(UInt8(ascii: "g")))
        XCTAssertNil(Hex.value(UInt8(ascii: "/")))
    }

    func testPercentEncodingEscapesAllButUnreserved() {
        var out: [UInt8] = []
        PercentEncoding.encode(Array("a-Z_0.~ &=+/é".utf8), into: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "a-Z_0.~%20%26%3D%2B%2F%C3%A9")
    }
}
