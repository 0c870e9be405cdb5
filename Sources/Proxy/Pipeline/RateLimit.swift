import Foundation
import KeybrakeCore
import NIOConcurrencyHelpers

extension ProxyPipeline {
    /// Phase 3: the key's own requests-per-minute limit, and each ancestor's, which its children share (per replica;
    /// safe to lose).
    func rateLimit(_ r: ProxiedRequest) throws {
        let now = clock.now()
        for key in r.key.chain {
            let policy = key.policy
            if let limit = policy.rateLimitPerMinute, let retry = rateLimiter.hit(key.id, limit: limit, now: now) {
                throw Denial(error: .rateLimited("Key '\(policy.label)' (\(key.id)) is limited to \(limit) requests a minute; retry in \(retry) s.", retryAfter: retry))
            }
        }
    }
}

/// Per-key requests-per-minute limit, in process memory (DESIGN §13: safe to lose; each replica
/// enforces the limit on its own share of traffic). Sliding window over two fixed minutes.
final class KeyRateLimiter: Sendable {
    struct Window { var minute: Int64; var current: Int; var previous: Int }
    let state = NIOLockedValueBox([String: Window]())

    /// nil if allowed (and counted), else seconds until a slot frees up.
    func hit(_ key: String, limit: Int, now: Date) -> Int? {
        let t = now.timeIntervalSince1970
        let minute = Int64(t / 60)
        let intoMinute = t / 60 - Double(minute)
        return state.withLockedValue { windows -> Int? in
            if windows.count > 100_000 { windows = windows.filter { $0.value.minute >= minute - 1 } }
            var w = windows[key] ?? Window(minute: minute, current: 0, previous: 0)
            if w.minute != minute {
                w = Window(minute: minute, current: 0, previous: w.minute == minute - 1 ? w.current : 0)
            }
            // Weighted count of the last 60 s.
            let estimate = Double(w.previous) * (1 - intoMinute) + Double(w.current)
            guard estimate + 1 <= Double(limit) else {
                windows[key] = w
                return max(1, Int((1 - intoMinute) * 60))
            }
            w.current += 1
            windows[key] = w
            return nil
        }
    }
}
