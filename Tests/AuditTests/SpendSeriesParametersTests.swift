import Foundation
import HTTPLayer
import KeybrakeCore
import XCTest

@testable import Audit

/// The pure parts of GET /v1/spend/series: where a bucket starts, and what a CSV cell may hold.
final class SpendSeriesParametersTests: XCTestCase {
    func testADateIsMidnightInTheSeriesTimeZone() throws {
        let newYork = KeyCalendar.calendar("America/New_York")
        // 8 March 2026 is the day New York moves to summer time: midnight is still 05:00 UTC.
        XCTAssertEqual(try AuditController.seriesTime("2026-03-08", field: "from", calendar: newYork),
                       RFC3339.parse("2026-03-08T05:00:00Z"))
        XCTAssertEqual(try AuditController.seriesTime("2026-03-09", field: "from", calendar: newYork),
                       RFC3339.parse("2026-03-09T04:00:00Z"))
        let tokyo = KeyCalendar.calendar("Asia/Tokyo")
        XCTAssertEqual(try AuditController.seriesTime("2026-12-01", field: "to", calendar: tokyo),
                       RFC3339.parse("2026-11-30T15:00:00Z"))
        // A timestamp is taken as written, whatever the series' zone.
        XCTAssertEqual(try AuditController.seriesTime("2026-12-01T10:30:00+02:00", field: "to", calendar: tokyo),
                       RFC3339.parse("2026-12-01T08:30:00Z"))
        XCTAssertNil(try AuditController.seriesTime(nil, field: "from", calendar: tokyo))
        XCTAssertNil(try AuditController.seriesTime("", field: "from", calendar: tokyo))
        for bad in ["2026-13-01T00:00:00", "tomorrow", "2026/12/01"] {
            XCTAssertThrowsError(try AuditController.seriesTime(bad, field: "to", calendar: tokyo), bad) {
                XCTAssertEqual(($0 as? KeybrakeError)?.field, "to")
            }
        }
    }

    func testCSVCellsAreQuotedWhenNeededAndFormulasDefused() {
        XCTAssertEqual(AuditController.csvField("agent"), "agent")
        XCTAssertEqual(AuditController.csvField("a,b"), "\"a,b\"")
        XCTAssertEqual(AuditController.csvField("say \"hi\""), "\"say \"\"hi\"\"\"")
        XCTAssertEqual(AuditController.csvField("two\nlines"), "\"two\nlines\"")
        // A label a tenant chose must not run as a formula in the spreadsheet the CSV is opened in.
        XCTAssertEqual(AuditController.csvField("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"")
        for lead in ["+", "-", "@", "="] {
            XCTAssertEqual(AuditController.csvField(lead + "1"), "'" + lead + "1")
        }
        XCTAssertEqual(AuditController.csvField(""), "")
    }
}
