import Foundation

/// When a failed delivery is tried again (DESIGN §14): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the failures
/// of attempts 1 to 7; a failed 8th attempt marks the delivery failed. An endpoint whose deliveries have failed for
/// `disableAfter` (5 days, no success in between) is disabled.
public struct RetrySchedule: Sendable, Equatable {
    public var delays: [TimeInterval]
    public var disableAfter: TimeInterval

    public static let standard = RetrySchedule(delays: [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000], disableAfter: 5 * 86_400)

    public init(delays: [TimeInterval], disableAfter: TimeInterval) {
        self.delays = delays
        self.disableAfter = disableAfter
    }

    /// Attempts a delivery gets before it is marked failed.
    public var maxAttempts: Int { delays.count + 1 }

    /// After attempt `attempt` (1-based) failed at `now`: when to try again, or nil (give up).
    public func nextAttempt(after attempt: Int, failedAt now: Date) -> Date? {
        guard attempt >= 1, attempt <= delays.count else { return nil }
        return now.addingTimeInterval(delays[attempt - 1])
    }
}
