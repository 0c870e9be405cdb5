import Foundation
import NIOConcurrencyHelpers

/// Fixed-window counter per key ("at most N per window"), in process memory.
/// Safe to lose on restart and per replica by design (DESIGN §13); used for signup-per-IP limits.
public final class WindowRateLimiter: Sendable {
    struct Window { var start: ContinuousClock.Instant; var count: Int }

    let limit: Int
    let window: Duration
    let maxKeys: Int
    let state = NIOLockedValueBox([String: Window]())

    public init(limit: Int, window: Duration, maxKeys: Int = 100_000) {
        self.limit = limit
        self.window = window
        self.maxKeys = maxKeys
    }

    /// Counts one event for `key`; returns nil if allowed, else seconds until the window resets.
    public func hit(_ key: String) -> Int? {
        let now = ContinuousClock.now
        return state.withLockedValue { windows -> Int? in
            if windows.count >= maxKeys { windows = windows.filter { now - $0.value.start < window } }
            var w = windows[key] ?? Window(start: now, count: 0)
            if now - w.start >= window { w = Window(start: now, count: 0) }
            guard w.count < limit else {
                let remaining = window - (now - w.start)
                return max(1, Int(remaining.components.seconds) + 1)
            }
            w.count += 1
            windows[key] = w
            return nil
        }
    }
}
