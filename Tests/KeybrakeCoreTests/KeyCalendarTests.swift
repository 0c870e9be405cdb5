import Foundation
import KeybrakeCore
import XCTest

final class KeyCalendarTests: XCTestCase {
    /// `2026-11-24T04:30:00Z` → a Date.
    func at(_ iso: String) -> Date { ISO8601DateFormatter().date(from: iso)! }

    func testDayIsTheKeysOwnDateNotUTCs() {
        // 04:30 UTC is still 23:30 the evening before in New York (EST, UTC-5).
        let p = KeyCalendar.periods(now: at("2026-11-24T04:30:00Z"), timezone: "America/New_York")
        XCTAssertEqual(p.day, "2026-11-23")
        XCTAssertEqual(p.month, "2026-11-01")
        XCTAssertEqual(p.dayEnd, at("2026-11-24T05:00:00Z"))
        XCTAssertEqual(p.monthEnd, at("2026-12-01T05:00:00Z"))
        XCTAssertEqual(p.utcMonth, "2026-11-01")
        XCTAssertEqual(p.utcMonthEnd, at("2026-12-01T00:00:00Z"))
    }

    func testMonthEndsAtTheKeysMidnightWhileTheUTCMonthLagsBehind() {
        // 23:30 UTC on 31 January is already 00:30 on 1 February in Berlin (CET, UTC+1).
        let p = KeyCalendar.periods(now: at("2026-01-31T23:30:00Z"), timezone: "Europe/Berlin")
        XCTAssertEqual(p.day, "2026-02-01")
        XCTAssertEqual(p.month, "2026-02-01")
        XCTAssertEqual(p.monthEnd, at("2026-02-28T23:00:00Z"))
        XCTAssertEqual(p.utcMonth, "2026-01-01", "metering counts in the UTC month, still January")
        XCTAssertEqual(p.utcMonthEnd, at("2026-02-01T00:00:00Z"))
    }

    func testUTCMonthIsAheadOfTheKeysMonthJustAfterUTCMidnight() {
        // 03:00 UTC on 1 December is 19:00 on 30 November in Los Angeles (PST, UTC-8).
        let p = KeyCalendar.periods(now: at("2026-12-01T03:00:00Z"), timezone: "America/Los_Angeles")
        XCTAssertEqual(p.day, "2026-11-30")
        XCTAssertEqual(p.month, "2026-11-01")
        XCTAssertEqual(p.dayEnd, at("2026-12-01T08:00:00Z"))
        XCTAssertEqual(p.utcMonth, "2026-12-01")
        XCTAssertEqual(p.utcMonthEnd, at("2027-01-01T00:00:00Z"))
    }

    func testDaylightSavingDayIs23HoursLong() {
        // New York springs forward on 8 March 2026: that day runs from 05:00 UTC to 04:00 UTC the next day.
        let p = KeyCalendar.periods(now: at("2026-03-08T12:00:00Z"), timezone: "America/New_York")
        XCTAssertEqual(p.day, "2026-03-08")
        XCTAssertEqual(p.dayEnd, at("2026-03-09T04:00:00Z"))
        XCTAssertEqual(p.monthEnd, at("2026-04-01T04:00:00Z"))
    }

    func testCachedAnswerIsNotReusedAcrossTheKeysMidnightOrTheUTCMonth() {
        let tz = "Asia/Tokyo"   // UTC+9, no daylight saving
        XCTAssertEqual(KeyCalendar.periods(now: at("2026-06-30T14:59:00Z"), timezone: tz).day, "2026-06-30")
        let next = KeyCalendar.periods(now: at("2026-06-30T15:01:00Z"), timezone: tz)
        XCTAssertEqual(next.day, "2026-07-01")
        XCTAssertEqual(next.month, "2026-07-01")
        XCTAssertEqual(next.utcMonth, "2026-06-01")
        let utcNext = KeyCalendar.periods(now: at("2026-07-01T00:01:00Z"), timezone: tz)
        XCTAssertEqual(utcNext.day, "2026-07-01")
        XCTAssertEqual(utcNext.utcMonth, "2026-07-01")
        // Going back in time (a test clock) is answered afresh too.
        XCTAssertEqual(KeyCalendar.periods(now: at("2026-06-30T14:59:00Z"), timezone: tz).day, "2026-06-30")
    }

    func testUnknownTimeZoneCountsAsUTC() {
        let now = at("2026-11-24T04:30:00Z")
        XCTAssertEqual(KeyCalendar.periods(now: now, timezone: "Not/AZone"), KeyCalendar.periods(now: now, timezone: "UTC"))
        XCTAssertEqual(KeyCalendar.utcDateString(now), "2026-11-24")
        XCTAssertEqual(KeyCalendar.dateString(at("0999-01-05T12:00:00Z"), KeyCalendar.calendar("UTC")), "0999-01-05")
    }
}
