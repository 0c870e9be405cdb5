import KeybrakeCore
import XCTest

@testable import Audit

/// What the admin API and the dashboard share from the Audit module: the filter parser and spend per label.
final class AuditSharedTests: XCTestCase {
    func day(_ id: String, _ label: String, vendor: String = "stripe", cap: Int64?, settled: Int64, reserved: Int64 = 0, unknown: Int64 = 0) -> SpendRepository.KeyDay {
        .init(keyId: id, label: label, vendor: vendor, status: "active", timezone: "UTC", dailyCap: cap.map(MicroUSD.init),
              settled: MicroUSD(settled), reserved: MicroUSD(reserved), unknown: MicroUSD(unknown))
    }

    func testLabelsAddUpTheirKeysInFirstSeenOrderAndOneUncappedKeyUncapsTheLabel() {
        let labels = LabelSpend.group([
            day("k1", "agent", cap: 5_000_000, settled: 1_000_000, reserved: 500_000),
            day("k2", "batch", vendor: "twilio", cap: nil, settled: 7),
            day("k3", "agent", cap: 2_000_000, settled: 0, unknown: 250_000),
            day("k4", "batch", cap: 1, settled: 3),
        ])
        XCTAssertEqual(labels.map(\.label), ["agent", "batch"])
        XCTAssertEqual(labels[0].keys.map(\.keyId), ["k1", "k3"])
        XCTAssertEqual(labels[0].spent, MicroUSD(1_750_000))
        XCTAssertEqual(labels[0].dailyCap, MicroUSD(7_000_000))
        XCTAssertEqual(labels[0].vendor, "stripe")
        XCTAssertNil(labels[1].dailyCap, "k2 has no cap")
        XCTAssertNil(labels[1].vendor, "twilio and stripe keys")
        XCTAssertEqual(labels[1].settled, MicroUSD(10))
    }

    func testFilterParsesEveryFieldAndNamesTheFirstBadOne() throws {
        let f = try AuditFilter.parse(["key_id": "key_1", "vendor": "stripe", "decision": "denied", "outcome": "settled",
                                       "status": "402", "from": "2026-11-01T00:00:00Z", "run_id": "r", "error_code": ""])
        XCTAssertEqual(f.keyId, "key_1"); XCTAssertEqual(f.vendor, "stripe"); XCTAssertEqual(f.decision, "denied")
        XCTAssertEqual(f.outcome, "settled"); XCTAssertEqual(f.status, 402); XCTAssertNotNil(f.from); XCTAssertEqual(f.runId, "r")
        XCTAssertNil(f.errorCode, "empty means absent")
        for (query, field) in [(["vendor": "paypal"], "vendor"), (["decision": "maybe"], "decision"), (["status": "99"], "status"),
                               (["key_id": String(repeating: "k", count: 65)], "key_id"), (["run_id": "a\u{7}"], "run_id")] {
            XCTAssertThrowsError(try AuditFilter.parse(query)) { XCTAssertEqual(($0 as? KeybrakeError)?.field, field) }
        }
    }
}
