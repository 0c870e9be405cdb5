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
/// Argon2 work is bounded against a flood of wrong secrets without giving a stranger power over a key whose id he
/// knows (DESIGN §4): attempts are counted *before* hashing, per (id, client address) and per client address
/// (`FailureLimits`: the stranger's address is cut off, the holder's is not); one id has at most one verification in
/// flight (the others wait their turn, round-robin over client addresses, then usually find the answer in the cache
/// or their limit reached); a hash whose request is gone is not started; and the cores are shared fairly between
/// tenants, verifications first (`HashScheduler`).
public final class TokenVerifier: Sendable {
    public struct Configuration: Sendable {
        public var cacheCapacity: Int = 10_000
        public var cacheTTL: Duration = .seconds(300)
        public var maxConcurrentHashes: Int = ProcessInfo.processInfo.activeProcessorCount
        /// Failed attempts per (id, client address) in a window before that address gets 429 for that id.
        public var maxFailures: Int = 10
        /// Failed attempts per client address, over all ids, in a window.
        public var maxClientFailures: Int = 100
        public var failureWindow: Duration = .seconds(60)
        public init() {}
    }

    struct CacheEntry {
        var digest: [UInt8]
        var expires: ContinuousClock.Instant
    }

    struct State {
        var cache: [String: CacheEntry] = [:]
        var failures = FailureLimits()
        /// Ids with a verification in flight, and the requests waiting for their turn (round-robin by client).
        var verifying: [String: FairQueue<CheckedContinuation<Void, Never>>] = [:]
        var hashes = 0
    }

    let configuration: Configuration
    let argon2: Argon2id
    let state = NIOLockedValueBox(State())
    let hashing: HashScheduler
    let clock = ContinuousClock()

    public init(configuration: Configuration = .init(), argon2: Argon2id = .owasp) {
        self.configuration = configuration
        self.argon2 = argon2
        self.hashing = HashScheduler(permits: configuration.maxConcurrentHashes)
    }

    /// Hashes a new token for storage (off the event loops), in `tenant`'s share of the cores, after any waiting
    /// verification. `tenant` is whoever pays for it: the tenant, or the client address for a signup.
    public func hashForStorage(_ token: String, tenant: String) async throws -> String {
        try await hashing.withPermit(.store, tenant: tenant, client: tenant) {
            try Task.checkCancellation()
            return try await NIOThreadPool.singleton.runIfActive { [argon2] in try argon2.hash(token) }
        }
    }

    /// true if `token` matches `storedHash`. `tenant` owns the token (its share of the cores pays for the hash);
    /// `client` is the caller's address as per-client limits count it, worked out only on a cache miss.
    /// Throws 429 `rate_limited` when this client has failed too often recently, 503 when no core could be had.
    public func verify(_ token: ParsedToken, storedHash: String, tenant: String, client: @autoclosure () -> String) async throws(KeybrakeError) -> Bool {
        let digest = Array(SHA256.hash(data: Data(token.raw.utf8)))
        if isCached(token.publicId, digest: digest, now: clock.now) { return true }
        let client = client(), id = token.publicId
        try checkFailureLimit(id, client: client, now: clock.now)

        await takeTurn(id, client: client)
        defer { endTurn(id) }
        // While this request waited, the same token may have been verified, or this client's attempts used up.
        if isCached(id, digest: digest, now: clock.now) { return true }
        try checkFailureLimit(id, client: client, now: clock.now)
        // The request is gone (client hung up, deadline passed) while it waited for its turn: nothing to hash.
        if Task.isCancelled { throw .unavailable }
        state.withLockedValue { $0.failures.count(id: id, client: client, now: clock.now, configuration) }
        let ok: Bool
        do {
            ok = try await hashing.withPermit(.verify, tenant: tenant, client: client) {
                // The request is gone (client hung up, deadline passed): its hash would only burn a core.
                try Task.checkCancellation()
                state.withLockedValue { $0.hashes += 1 }
                return try await NIOThreadPool.singleton.runIfActive { Argon2id.verify(token.raw, encoded: storedHash) }
            }
        } catch {
            // Never hashed (no core before the request was gone): not a failure of this client's.
            state.withLockedValue { $0.failures.refund(id: id, client: client) }
            throw .unavailable
        }
        if ok {
            let later = clock.now
            state.withLockedValue { state in
                state.failures.succeeded(id: id, client: client)
                if state.cache.count >= configuration.cacheCapacity { evict(&state, now: later) }
                state.cache[id] = CacheEntry(digest: digest, expires: later.advanced(by: configuration.cacheTTL))
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

    /// Waits until no other verification of `publicId` is in flight on this replica. Waiters take turns
    /// round-robin by client address, so the holder never queues behind all of a stranger's attempts.
    func takeTurn(_ publicId: String, client: String) async {
        let mine = state.withLockedValue { state -> Bool in
            if state.verifying[publicId] == nil { state.verifying[publicId] = FairQueue(); return true }
            return false
        }
        if mine { return }
        await withCheckedContinuation { (turn: CheckedContinuation<Void, Never>) in
            let now = state.withLockedValue { state -> Bool in
                // The holder may have finished between the two locks.
                if state.verifying[publicId] == nil { state.verifying[publicId] = FairQueue(); return true }
                state.verifying[publicId]?.append(turn, share: client, flow: client)
                return false
            }
            if now { turn.resume() }
        }
    }

    /// Hands the id's turn to the next waiter, or frees it.
    func endTurn(_ publicId: String) {
        let next = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.verifying[publicId]?.popNext() else {
                state.verifying[publicId] = nil
                return nil
            }
            return waiter
        }
        next?.resume()
    }

    /// Forget a cached verification (e.g. after revoking an admin token).
    public func forget(publicId: String) {
        _ = state.withLockedValue { $0.cache.removeValue(forKey: publicId) }
    }

    func checkFailureLimit(_ publicId: String, client: String, now: ContinuousClock.Instant) throws(KeybrakeError) {
        if let refusal = state.withLockedValue({ $0.failures.refusal(id: publicId, client: client, now: now, configuration) }) {
            throw refusal
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
