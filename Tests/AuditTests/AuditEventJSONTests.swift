import Audit
import Foundation
import XCTest

/// The hand-written audit JSON must say exactly what JSONEncoder would (it feeds jsonb_populate_record).
final class AuditEventJSONTests: XCTestCase {
    func testHandWrittenJSONMatchesJSONEncoder() throws {
        var event = AuditEvent(tenantId: "ten_1", vendor: "stripe", method: "POST", path: "/v1/charges")
        event.keyId = "key_1"
        event.keyLabel = "quote\" back\\slash \n tab\t ctl\u{1} é 💸 </script>"
        event.operation = "charges.create"
        event.decision = .allowed
        event.upstreamStatus = 200
        event.amountMinor = 1250
        event.currency = "usd"
        event.amountMicros = 12_500_000
        event.idempotencyKey = "k-1"
        event.idempotencyAuto = true
        event.runId = "run\u{0}x"
        event.outcome = .outcomeUnknown
        event.overheadUs = 321
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let expected = try JSONSerialization.jsonObject(with: encoder.encode(event)) as? NSDictionary
        let actual = try JSONSerialization.jsonObject(with: Data(event.columnsJSON().utf8)) as? NSDictionary
        XCTAssertEqual(actual, expected)
        XCTAssertNil(actual?["resolves"], "absent optionals are omitted (NULL columns)")
    }
}
