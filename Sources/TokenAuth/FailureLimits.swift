import KeybrakeCore

/// Unsuccessful verifications, counted before each hash (DESIGN §4 "Knowing a key id is not power over the key").
///
/// Counted per (token id, client address) and per client address, never per id alone: a stranger who knows an id
/// (ids are public) and sends wrong secrets is cut off after `maxFailures` for that id — or after
/// `maxClientFailures` across all ids — while the key's holder, from another address, still verifies.
/// Fixed windows; a success clears its (id, client) count and gives its attempt back to the client.
struct FailureLimits {
    struct Window {
        var count: Int
        var start: ContinuousClock.Instant
    }

    var byIdAndClient: [String: Window] = [:]
    var byClient: [String: Window] = [:]

    static func pair(_ id: String, _ client: String) -> String { id + " " + client }

    /// 429 if this client has failed too often for this id, or for any id, in the current window.
    func refusal(id: String, client: String, now: ContinuousClock.Instant, _ c: TokenVerifier.Configuration) -> KeybrakeError? {
        if let retry = Self.retryAfter(byIdAndClient[Self.pair(id, client)], limit: c.maxFailures, window: c.failureWindow, now: now) {
            return .rateLimited("Too many failed attempts with this token id from your address; try again in \(retry) s.", retryAfter: retry)
        }
        if let retry = Self.retryAfter(byClient[client], limit: c.maxClientFailures, window: c.failureWindow, now: now) {
            return .rateLimited("Too many failed token attempts from your address; try again in \(retry) s.", retryAfter: retry)
        }
        return nil
    }

    /// One attempt about to be hashed.
    mutating func count(id: String, client: String, now: ContinuousClock.Instant, _ c: TokenVerifier.Configuration) {
        Self.bump(&byIdAndClient, Self.pair(id, client), now: now, window: c.failureWindow, capacity: c.cacheCapacity)
        Self.bump(&byClient, client, now: now, window: c.failureWindow, capacity: c.cacheCapacity)
    }

    /// The attempt verified: it was not a failure.
    mutating func succeeded(id: String, client: String) {
        byIdAndClient[Self.pair(id, client)] = nil
        if let window = byClient[client] { byClient[client]?.count = max(0, window.count - 1) }
    }

    /// The attempt was never hashed (its request was gone before a core was free): it does not count.
    mutating func refund(id: String, client: String) {
        let pair = Self.pair(id, client)
        if let window = byIdAndClient[pair] { byIdAndClient[pair]?.count = max(0, window.count - 1) }
        if let window = byClient[client] { byClient[client]?.count = max(0, window.count - 1) }
    }

    static func retryAfter(_ window: Window?, limit: Int, window length: Duration, now: ContinuousClock.Instant) -> Int? {
        guard let window else { return nil }
        let elapsed = now - window.start
        guard elapsed <= length, window.count >= limit else { return nil }
        return max(1, Int((length - elapsed).components.seconds) + 1)
    }

    static func bump(_ windows: inout [String: Window], _ key: String, now: ContinuousClock.Instant, window length: Duration, capacity: Int) {
        if windows.count >= capacity, windows[key] == nil {
            // Bounded memory: drop closed windows first; only a table full of open ones is cleared.
            windows = windows.filter { now - $0.value.start <= length }
            if windows.count >= capacity { windows.removeAll(keepingCapacity: true) }
        }
        var w = windows[key] ?? Window(count: 0, start: now)
        if now - w.start > length { w = Window(count: 0, start: now) }
        w.count += 1
        windows[key] = w
    }
}
