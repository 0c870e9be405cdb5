import Crypto
import Foundation
import KeybrakeCore
import NIOPosix
import NIOConcurrencyHelpers

/// Verifies presented tokens against stored argon2id hashes without paying argon2 on every request.
///
/// After one successful verify, SHA-256(token) is cached per public id (bounded, TTL ≤ 5 min) and later
/// requests compare digests in constant time. The cache only replaces the hash check: callers still read
/// the key's status from Postgres on every request, so revocation is immediate on every replica.
/// Argon2 work is bounded against a flood of wrong secrets for one id: attempts are counted *before* hashing (after
/// `maxFailures` unsuccessful attempts in the window the id gets 429 without hashing), one id has at most one
/// verification in flight (the others wait their turn, then usually find the answer in the cache or the limit
/// reached), a hash whose request is gone is not started, and all hashing shares a semaphore sized to the cores —
/// so a flood on one id takes one core at most and other tenants' fresh tokens still verify.
public final class TokenVerifier: Sendable {
    public struct Configuration: Sendable {
        public var cacheCapacity: Int = 10_000
        public var cacheTTL: Duration = .seconds(300)
        public var maxConcurrentHashes: Int = ProcessInfo.processInfo.activeProcessorCount
        public var maxFailures: Int = 10
        public var failureWindow: Duration = .seconds(60)
        public init() {}
    }

    struct CacheEntry {
        var digest: [UInt8]
        var expires: ContinuousClock.Instant
    }

    struct FailureWindow {
        var count: Int
        var windowStart: ContinuousClock.Instant
    }

    struct State {
        var cache: [String: CacheEntry] = [:]
        /// Unsuccessful attempts per id in the current window, counted before each hash.
        var failures: [String: FailureWindow] = [:]
        /// Ids with a verification in flight, and the requests waiting for their turn (FIFO).
        var verifying: [String: [CheckedContinuation<Void, Never>]] = [:]
        var hashes = 0
    }

    let configuration: Configuration
    let argon2: Argon2id
    let state = NIOLockedValueBox(State())
    let hashSlots: AsyncSemaphore
    let clock = ContinuousClock()

    public init(configuration: Configuration = .init(), argon2: Argon2id = .owasp) {
        self.configuration = configuration
        self.argon2 = argon2
        self.hashSlots = AsyncSemaphore(permits: max(1, configuration.maxConcurrentHashes))
    }

    /// Hashes a new token for storage (off the event loops, within the argon2 concurrency bound).
    public func hashForStorage(_ token: String) async throws -> String {
        try await hashSlots.withPermit {
            try await NIOThreadPool.singleton.runIfActive { [argon2] in try argon2.hash(token) }
        }
    }

    /// true if `token` matches `storedHash`. Throws 429 `rate_limited` when the id has failed too often recently.
    public func verify(_ token: ParsedToken, storedHash: String) async throws(KeybrakeError) -> Bool {
        let digest = Array(SHA256.hash(data: Data(token.raw.utf8)))
        let now = clock.now
        let cached: Bool = state.withLockedValue { state in
            guard let entry = state.cache[token.publicId], entry.expires > now else { return false }
            return constantTimeEquals(entry.digest, digest)
        }
        if cached { return true }
        try checkFailureLimit(token.publicId, now: now)

        await takeTurn(token.publicId)
        defer { endTurn(token.publicId) }
        // While this request waited, the same token may have been verified, or the id's attempts used up.
        if isCached(token.publicId, digest: digest, now: clock.now) { return true }
        try checkFailureLimit(token.publicId, now: clock.now)
        countAttempt(token.publicId, now: clock.now)
        let ok: Bool
        do {
            ok = try await hashSlots.withPermit {
                // The request is gone (client hung up, deadline passed): its hash would only burn a core.
                try Task.checkCancellation()
                state.withLockedValue { $0.hashes += 1 }
                return try await NIOThreadPool.singleton.runIfActive { Argon2id.verify(token.raw, encoded: storedHash) }
            }
        } catch {
            throw .unavailable
        }
        if ok {
            let later = clock.now
            state.withLockedValue { state in
                state.failures[token.publicId] = nil
                if state.cache.count >= configuration.cacheCapacity { evict(&state, now: later) }
                state.cache[token.publicId] = CacheEntry(digest: digest, expires: later.advanced(by: configuration.cacheTTL))
            }
        }
        return ok
    }

    /// argon2 verifications performed so far (tests and metrics).
    public var hashesPerformed: Int { state.withLockedValue { $0.hashes } }

    func isCached(_ publicId: String, digest: [UInt8], now: ContinuousClock.Instant) -> Bool {
        state.withLockedValue { state in
            guard let entry = state.cache[publicId], entry.expires > now else { return false }
            return constantTimeEquals(entry.digest, digest)
        }
    }

    /// Counts an attempt before its hash: a burst of wrong secrets is cut off after `maxFailures`, not after each
    /// one has been hashed. A success clears the count.
    func countAttempt(_ publicId: String, now: ContinuousClock.Instant) {
        state.withLockedValue { state in
            var window = state.failures[publicId] ?? FailureWindow(count: 0, windowStart: now)
            if now - window.windowStart > configuration.failureWindow { window = FailureWindow(count: 0, windowStart: now) }
            window.count += 1
            if state.failures.count >= configuration.cacheCapacity { state.failures.removeAll(keepingCapacity: true) }
            state.failures[publicId] = window
        }
    }

    /// Waits until no other verification of `publicId` is in flight on this replica.
    func takeTurn(_ publicId: String) async {
        let mine = state.withLockedValue { state -> Bool in
            if state.verifying[publicId] == nil { state.verifying[publicId] = []; return true }
            return false
        }
        if mine { return }
        await withCheckedContinuation { (turn: CheckedContinuation<Void, Never>) in
            let now = state.withLockedValue { state -> Bool in
                // The holder may have finished between the two locks.
                if state.verifying[publicId] == nil { state.verifying[publicId] = []; return true }
                state.verifying[publicId]?.append(turn)
                return false
            }
            if now { turn.resume() }
        }
    }

    /// Hands the id's turn to the next waiter, or frees it.
    func endTurn(_ publicId: String) {
        let next = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            guard var waiters = state.verifying[publicId], !waiters.isEmpty else {
                state.verifying[publicId] = nil
                return nil
            }
            let first = waiters.removeFirst()
            state.verifying[publicId] = waiters
            return first
        }
        next?.resume()
    }

    /// Forget a cached verification (e.g. after revoking an admin token).
    public func forget(publicId: String) {
        _ = state.withLockedValue { $0.cache.removeValue(forKey: publicId) }
    }

    func checkFailureLimit(_ publicId: String, now: ContinuousClock.Instant) throws(KeybrakeError) {
        let retryAfter: Int? = state.withLockedValue { state in
            guard let window = state.failures[publicId] else { return nil }
            let elapsed = now - window.windowStart
            guard elapsed <= configuration.failureWindow, window.count >= configuration.maxFailures else { return nil }
            let remaining = configuration.failureWindow - elapsed
            return max(1, Int(remaining.components.seconds) + 1)
        }
        if let retryAfter {
            throw .rateLimited("Too many failed attempts with this token id; try again in \(retryAfter) s.", retryAfter: retryAfter)
        }
    }

    private func evict(_ state: inout State, now: ContinuousClock.Instant) {
        state.cache = state.cache.filter { $0.value.expires > now }
        // Still full of live entries: drop the ones closest to expiry.
        if state.cache.count >= configuration.cacheCapacity {
            let drop = state.cache.sorted { $0.value.expires < $1.value.expires }.prefix(configuration.cacheCapacity / 10 + 1)
            for (key, _) in drop { state.cache[key] = nil }
        }
    }
}

/// Compares two byte strings in time that depends only on their length.
func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<a.count { diff |= a[i] ^ b[i] }
    return diff == 0
}
