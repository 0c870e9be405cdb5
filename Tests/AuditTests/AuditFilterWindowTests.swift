import Foundation
import KeybrakeCore
import XCTest

@testable import Audit

/// The rule that keeps an admin read off the whole history (DESIGN §16): a filter on an expected value alone
/// (`decision=allowed`, a 2xx `status`, `outcome=settled`, `state=in_flight`) has no index, so it must name a
/// window of at most 31 days; the dashboard gives it the last 31 days itself.
final class AuditFilterWindowTests: XCTestCase {
    let now = Date(timeIntervalSince1970: 1_796_000_000)

    func field(_ query: [String: String]) -> String? {
        do {
            _ = try AuditFilter.parse(query)
            return nil
        } catch {
            return error.field
        }
    }

    func testAnExpectedValueAloneNeedsFromAndToAtMost31DaysApart() throws {
        for expected in [["decision": "allowed"], ["status": "200"], ["status": "204"], ["outcome": "settled"], ["state": "in_flight"]] {
            XCTAssertEqual(field(expected), "from", "\(expected) without a window")
            XCTAssertEqual(field(expected.merging(["from": "2026-11-01T00:00:00Z"]) { $1 }), "to", "\(expected) with from only")
            XCTAssertEqual(field(expected.merging(["from": "2026-11-01T00:00:00Z", "to": "2026-12-02T00:00:01Z"]) { $1 }), "to",
                           "\(expected): 31 days and a second")
            XCTAssertNil(field(expected.merging(["from": "2026-11-01T00:00:00Z", "to": "2026-12-02T00:00:00Z"]) { $1 }),
                         "\(expected): exactly 31 days")
        }
    }

    func testAnIndexedFilterBesideItNeedsNoWindow() throws {
        for indexed in [["key_id": "key_1"], ["vendor": "twilio"], ["run_id": "r"], ["parent_key_id": "key_2"], ["idempotency_key": "k"]] {
            XCTAssertNil(field(indexed.merging(["decision": "allowed", "status": "200"]) { $1 }), "\(indexed)")
        }
        // The unexpected values are indexed themselves (partial indexes and generated columns).
        for unexpected in [["decision": "denied"], ["status": "402"], ["outcome": "outcome_unknown"], ["error_code": "daily_usd_cap_exceeded"], [:]] {
            XCTAssertNil(field(unexpected), "\(unexpected)")
        }
    }

    func testTheDashboardReadsTheLast31DaysWhenNoWindowIsGiven() throws {
        let f = try AuditFilter.parse(["outcome": "settled"], defaultWindowUntil: now)
        XCTAssertEqual(f.to, now)
        XCTAssertEqual(f.from, now.addingTimeInterval(-31 * 86_400))
        let indexed = try AuditFilter.parse(["outcome": "released"], defaultWindowUntil: now)
        XCTAssertNil(indexed.from, "an indexed filter reads the whole history, newest first")
        XCTAssertNil(indexed.to)
        XCTAssertEqual(field(["outcome": "settled", "from": "2026-01-01T00:00:00Z"]), "to",
                       "a window the caller started is the caller's: the dashboard does not complete it")
        XCTAssertThrowsError(try AuditFilter.parse(["outcome": "settled", "from": "2026-01-01T00:00:00Z"], defaultWindowUntil: now))
    }

    func testToBeforeFromIsRefusedNamingTo() {
        XCTAssertEqual(field(["from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"]), "to")
        XCTAssertEqual(field(["from": "yesterday"]), "from")
        XCTAssertEqual(field(["status": "600"]), "status")
        XCTAssertEqual(field(["outcome": "maybe"]), "outcome")
    }
}
