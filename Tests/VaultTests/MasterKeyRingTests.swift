import Foundation
import XCTest

@testable import Vault

/// `KEYBRAKE_MASTER_KEYS`: parsed strictly, and never echoed — a configuration error must not print key material.
final class MasterKeyRingTests: XCTestCase {
    func testEntriesParseInOrderFromCommasOrLines() throws {
        let a = MasterKeyRing.generateConfigLine(id: "new-2")
        let b = MasterKeyRing.generateConfigLine(id: "old_1")
        for text in ["\(a),\(b)", "\(a)\n\(b)\n", " \(a) ,\n\n \(b)"] {
            let ring = try MasterKeyRing(parsing: text)
            XCTAssertEqual(ring.entries.map(\.id), ["new-2", "old_1"])
            XCTAssertEqual(ring.active.id, "new-2")
            XCTAssertNotNil(ring.entry(id: "old_1"))
            XCTAssertNil(ring.entry(id: "other"))
        }
    }

    func testBadConfigurationsAreRefusedWithoutPrintingKeyMaterial() {
        let material = Data((0..<32).map { UInt8($0 + 65) }).base64EncodedString()
        let short = Data((0..<16).map { UInt8($0 + 65) }).base64EncodedString()
        let cases = [
            "k1" + material,                                  // no colon
            ":\(material)",                                   // empty id
            "k 1:\(material)",                                // id with a space
            "k1:\(short)",                                    // 16 bytes, not 32
            "k1:not base64!",
            "k1:\(material),k1:\(material)",                  // the same id twice
            "ключ:\(material)",                               // letters, but not ASCII
        ]
        for text in cases {
            XCTAssertThrowsError(try MasterKeyRing(parsing: text), text) { error in
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("KEYBRAKE_MASTER_KEYS is invalid"), message)
                XCTAssertFalse(message.contains(material), "key material in: \(message)")
                XCTAssertFalse(message.contains(short), "key material in: \(message)")
            }
        }
        for empty in ["", " , \n"] {
            XCTAssertThrowsError(try MasterKeyRing(parsing: empty)) {
                guard case .empty = $0 as? MasterKeyRing.ConfigError else { return XCTFail("\($0)") }
            }
        }
    }
}
