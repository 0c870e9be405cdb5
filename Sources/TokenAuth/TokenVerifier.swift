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
/// Argon2 work is bounded (a semaphore sized to the cores) and ids with repeated failures get 429 without hashing.
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
        var failures: [String: FailureWindow] = [:]
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
        let ok: Bool
        do {
            ok = try await hashSlots.withPermit {
                try await NIOThreadPool.singleton.runIfActive { Argon2id.verify(token.raw, encoded: storedHash) }
            }
        } catch {
            throw .unavailable
        }
        let later = clock.now
        state.withLockedValue { state in
            if ok {
                state.failures[token.publicId] = nil
                if state.cache.count >= configuration.cacheCapacity { evict(&state, now: later) }
                state.cache[token.publicId] = CacheEntry(digest: digest, expires: later.advanced(by: configuration.cacheTTL))
            } else {
                var window = state.failures[token.publicId] ?? FailureWindow(count: 0, windowStart: later)
                if later - window.windowStart > configuration.failureWindow { window = FailureWindow(count: 0, windowStart: later) }
                window.count += 1
                if state.failures.count >= configuration.cacheCapacity { state.failures.removeAll(keepingCapacity: true) }
                state.failures[token.publicId] = window
            }
        }
        return ok
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
