import Foundation
import HTTPLayer
import KeybrakeCore
import XCTest

@testable import Tenants

/// What signup accepts as an email, what each plan includes, and which month a request counts in.
final class TenantRulesTests: XCTestCase {
    func testAnEmailIsOneAtSignWithADottedDomainAndNoSpaces() {
        for good in ["ops@acme.test", "a.b+tag@mail.example.co.uk", "x@y.z"] {
            XCTAssertTrue(TenantController.looksLikeEmail(good), good)
        }
        for bad in ["", "ops", "ops@", "@acme.test", "ops@acme", "ops@.acme", "ops@acme.", "o ps@acme.test", "ops@acme.test\n",
                    "a@b@acme.test", "ops@acme\t.test"] {
            XCTAssertFalse(TenantController.looksLikeEmail(bad), bad.debugDescription)
        }
    }

    func testOnlyTheFreePlanHasAQuota() {
        let configuration = TenantsConfiguration(freeMonthlyRequests: 250)
        XCTAssertEqual(configuration.monthlyQuota(for: .free), 250)
        XCTAssertNil(configuration.monthlyQuota(for: .pro))
        XCTAssertEqual(Set(Plan.allCases.map(\.rawValue)), ["free", "pro"])
    }

    func testARequestCountsInItsUTCMonth() throws {
        func month(_ text: String) throws -> String { TenantController.utcMonth(try XCTUnwrap(RFC3339.parse(text))) }
        XCTAssertEqual(try month("2026-12-31T23:59:59Z"), "2026-12-01")
        XCTAssertEqual(try month("2027-01-01T00:00:00Z"), "2027-01-01")
        // Still December in New York, already January in UTC: the quota counts the UTC month.
        XCTAssertEqual(try month("2026-12-31T20:00:00-05:00"), "2027-01-01")
        XCTAssertEqual(try month("2028-02-29T12:00:00Z"), "2028-02-01")
    }
}
