import KeybrakeCore
@testable import Proxy
import XCTest

/// Every transition of MoneyState's table (Sources/Proxy/Pipeline/MoneyState.swift), one assertion each.
final class MoneyStateTests: XCTestCase {
    let reserved = MoneyState.reserved(reservationId: "aud_1", amount: MicroUSD(1_000_000))
    let resuming = MoneyState.resuming(earlierAuditId: "aud_0", reservationId: "aud_0")

    func testFirstAttemptSettlesOn2xx() {
        XCTAssertEqual(reserved.after(.answered(status: 200)),
                       .init(reservation: .settle("aud_1"), records: .complete(replayToDuplicates: true), outcome: .settled))
        XCTAssertEqual(MoneyState.open.after(.answered(status: 201)),
                       .init(reservation: .none, records: .complete(replayToDuplicates: true), outcome: nil))
    }

    func testFirstAttemptFinalRefusalIsReleasedAndReplayedOnlyToTheSameKey() {
        for status in [400, 402, 404, 422] {
            XCTAssertEqual(reserved.after(.answered(status: status)),
                           .init(reservation: .release("aud_1"), records: .complete(replayToDuplicates: false), outcome: .released), "\(status)")
        }
    }

    func testFirstAttemptTransientRefusalIsReleasedAndNotStored() {
        for status in [401, 403, 409, 429, 418] {
            XCTAssertEqual(reserved.after(.answered(status: status)),
                           .init(reservation: .release("aud_1"), records: .drop, outcome: .released), "\(status)")
        }
    }

    func testFirstAttempt5xxOrLostAnswerIsUnknown() {
        for event in [MoneyState.Upstream.answered(status: 500), .answered(status: 503), .lost] {
            XCTAssertEqual(reserved.after(event), .init(reservation: .markUnknown("aud_1"), records: .unknown, outcome: .outcomeUnknown), "\(event)")
        }
        XCTAssertEqual(MoneyState.open.after(.lost), .init(reservation: .none, records: .unknown, outcome: nil))
    }

    func testNeverSentOrDeniedIsReleased() {
        XCTAssertEqual(reserved.after(.notSent), .init(reservation: .release("aud_1"), records: .drop, outcome: .released))
        XCTAssertEqual(reserved.after(.denied), .init(reservation: .release("aud_1"), records: .drop, outcome: .released))
        XCTAssertEqual(MoneyState.open.after(.denied), .init(reservation: .none, records: .drop, outcome: nil))
    }

    func testResumedRetrySettlesTheEarlierReservationOn2xx() {
        XCTAssertEqual(resuming.after(.answered(status: 200)),
                       .init(reservation: .settle("aud_0"), records: .complete(replayToDuplicates: true), outcome: .settled))
    }

    /// A 4xx, a 5xx, a lost answer, a refused connection or a denial of the retry says nothing about the first
    /// attempt: the amount stays unknown and the records go back to the earlier request.
    func testResumedRetryKeepsTheOutcomeUnknownOnAnythingButA2xx() {
        let events: [MoneyState.Upstream] = [.answered(status: 400), .answered(status: 402), .answered(status: 409), .answered(status: 429),
                                             .answered(status: 401), .answered(status: 500), .lost, .notSent, .denied]
        for event in events {
            XCTAssertEqual(resuming.after(event),
                           .init(reservation: .markUnknown("aud_0"), records: .restoreUnknown(earlierAuditId: "aud_0"), outcome: .outcomeUnknown),
                           "\(event)")
        }
        let noReservation = MoneyState.resuming(earlierAuditId: "aud_0", reservationId: nil)
        XCTAssertEqual(noReservation.after(.answered(status: 429)),
                       .init(reservation: .none, records: .restoreUnknown(earlierAuditId: "aud_0"), outcome: nil))
    }
}
