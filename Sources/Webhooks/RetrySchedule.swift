import Foundation

/// When a failed delivery is tried again (DESIGN §14): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the attempts
/// that failed, then it is marked failed — eight attempts over about 27.6 hours.
public enum RetrySchedule {
    public static let delays: [TimeInterval] = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600]
    public static var maxAttempts: Int { delays.count + 1 }

    /// The time of the next attempt after attempt number `attempt` (1 = the first) failed at `now`; nil: give up.
    public static func next(after attempt: Int, failedAt now: Date) -> Date? {
        guard attempt >= 1, attempt <= delays.count else { return nil }
        return now.addingTimeInterval(delays[attempt - 1])
    }

    /// An endpoint whose deliveries have failed for this long, without one success, is disabled.
    public static let disableAfter: TimeInterval = 5 * 86_400
}
