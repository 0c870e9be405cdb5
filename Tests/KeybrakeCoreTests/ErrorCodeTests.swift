import Foundation
import KeybrakeCore
import XCTest

/// The catalogue of error codes (`ErrorCode`) is the one list of what clients can match on.
final class ErrorCodeTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testEveryCodeIsUniqueAndSnakeCase() {
        let codes = ErrorCode.allCases.map(\.rawValue)
        XCTAssertEqual(Set(codes).count, codes.count, "a code named twice")
        for code in codes {
            XCTAssertNotNil(code.wholeMatch(of: /[a-z]+(_[a-z0-9]+)*/), "\(code) is not snake_case")
        }
    }

    /// Every error code openapi.yaml shows (`code: …` in examples, `example: …` of `error_code`) is in the catalogue.
    func testTheCodesOpenAPIShowsAreInTheCatalogue() throws {
        let spec = try String(contentsOf: Self.repository.appendingPathComponent("openapi.yaml"), encoding: .utf8)
        var shown = Set(spec.matches(of: /\n\s+code: ([a-z_]+)\n/).map { String($0.1) })
        let lines = spec.split(separator: "\n", omittingEmptySubsequences: false)
        for (i, line) in lines.enumerated() where line.trimmingCharacters(in: .whitespaces) == "error_code:" {
            for next in lines[(i + 1)...].prefix(20) {
                if let m = next.firstMatch(of: /^\s+example: ([a-z_]+)$/) { shown.insert(String(m.1)); break }
            }
        }
        XCTAssertFalse(shown.isEmpty, "no codes parsed from openapi.yaml")
        let catalogue = Set(ErrorCode.allCases.map(\.rawValue))
        XCTAssertEqual(shown.subtracting(catalogue).sorted(), [], "in openapi.yaml but not in ErrorCode")
    }

    /// The wire spelling is the raw value: building from the catalogue changes nothing a client sees.
    func testAnErrorBuiltFromTheCatalogueCarriesItsWireCode() {
        let error = KeybrakeError(status: 429, code: .dailyUSDCapExceeded, message: "m", retryAfterSeconds: 3)
        XCTAssertEqual(error, KeybrakeError(status: 429, code: "daily_usd_cap_exceeded", message: "m", retryAfterSeconds: 3))
        XCTAssertEqual(KeybrakeError.shuttingDown.code, "shutting_down")
    }
}
