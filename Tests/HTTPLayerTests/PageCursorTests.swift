import Foundation
import XCTest

@testable import HTTPLayer

/// Page cursors are opaque to clients but checked on the way back in: a cursor of another list, or one edited by
/// hand, is refused (nil → 400), never read as some other position.
final class PageCursorTests: XCTestCase {
    func testACursorRoundTripsAndIsURLSafe() {
        for id in ["key_0123456789abcdef", "aud_Z", "key_A1b2C3"] {
            let cursor = PageCursor.encode(id, kind: "k1")
            XCTAssertFalse(cursor.contains { "+/=".contains($0) }, cursor)
            XCTAssertEqual(PageCursor.decode(cursor, kind: "k1", idPrefix: String(id.prefix(4))), id)
        }
    }

    func testACursorOfAnotherListOrKindIsRefused() {
        let keys = PageCursor.encode("key_abc", kind: "k1")
        XCTAssertNil(PageCursor.decode(keys, kind: "a1", idPrefix: "key_"), "another kind")
        XCTAssertNil(PageCursor.decode(keys, kind: "k1", idPrefix: "aud_"), "another id prefix")
        XCTAssertNil(PageCursor.decode(PageCursor.encode("key_ab'c", kind: "k1"), kind: "k1", idPrefix: "key_"), "not base62")
        XCTAssertNil(PageCursor.decode(PageCursor.encode("key_", kind: "k1"), kind: "k1", idPrefix: "key_"), "no id at all")
        XCTAssertNil(PageCursor.decode("%%%", kind: "k1", idPrefix: "key_"))
        XCTAssertNil(PageCursor.decode(String(repeating: "a", count: 201), kind: "k1", idPrefix: "key_"), "too long")
    }

    func testATextCursorKeepsItsText() {
        let label = "agents, billing / ☃"
        XCTAssertEqual(PageCursor.decodeText(PageCursor.encode(label, kind: "l1"), kind: "l1"), label)
        XCTAssertNil(PageCursor.decodeText(PageCursor.encode(label, kind: "l1"), kind: "k1"))
    }
}
