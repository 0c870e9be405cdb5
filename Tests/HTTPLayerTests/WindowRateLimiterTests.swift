import Foundation
import XCTest

@testable import HTTPLayer

/// "At most N per window" per key, in memory (signups per address, key creations per tenant).
final class WindowRateLimiterTests: XCTestCase {
    func testTheLimitHoldsPerKeyAndTheWindowStartsAgain() throws {
        let limiter = WindowRateLimiter(limit: 2, window: .milliseconds(300))
        XCTAssertNil(limiter.hit("a"))
        XCTAssertNil(limiter.hit("a"))
        XCTAssertEqual(limiter.hit("a"), 1, "refused, retry after at least a second")
        XCTAssertNil(limiter.hit("b"), "another key has its own count")
        Thread.sleep(forTimeInterval: 0.35)
        XCTAssertNil(limiter.hit("a"), "a new window")
    }

    func testRetryAfterCountsTheSecondsLeftRoundedUp() {
        let limiter = WindowRateLimiter(limit: 1, window: .seconds(60))
        XCTAssertNil(limiter.hit("a"))
        let retry = limiter.hit("a")
        XCTAssertEqual(retry, 60, "59.99… seconds left: say 60, never 59")
    }

    func testForgettingOldWindowsDoesNotForgetLiveOnes() {
        let limiter = WindowRateLimiter(limit: 1, window: .seconds(60), maxKeys: 2)
        XCTAssertNil(limiter.hit("a"))
        XCTAssertNil(limiter.hit("b"))
        XCTAssertNil(limiter.hit("c"), "past maxKeys only expired windows are dropped…")
        XCTAssertNotNil(limiter.hit("a"), "…so a's live window still counts")
    }
}
