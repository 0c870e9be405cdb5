import KeybrakeCore
import Logging
import Metrics
import NIOConcurrencyHelpers

/// Group commit for one hot key. Requests that begin (claim + reserve) on a key while this replica's previous
/// begin for that key is still in flight wait, then go together in one statement (kb_begin_many): one round trip,
/// one commit and one lock of the key's counters for all of them, instead of each queueing on that lock inside
/// Postgres (where waiting costs CPU and every commit waits for its own fsync while holding the lock).
///
/// Nothing waits when the key is idle: a lone request is sent at once (kb_begin). Items are processed in arrival
/// order, each exactly as kb_begin would process it, so caps, quota and idempotency are what they are one by one.
/// Replicas do not coordinate; across replicas the counters' row lock still serialises the batches.
final class BeginBatcher: Sendable {
    struct Item: Sendable {
        var claims: [IdempotencyStore.Claim]
        var ownerId: String
        var amount: MicroUSD
    }

    /// Requests that may share a statement: same key and the same periods.
    struct Key: Hashable, Sendable {
        var keyId: String
        var tenantId: String
        var day: String
        var month: String
        var usageMonth: String
        var freeQuota: Int
    }

    typealias Outcome = Result<SpendLedger.BeginResult, any Error>

    struct Waiter: Sendable {
        var item: Item
        var continuation: CheckedContinuation<Wake, Never>
    }

    enum Wake: Sendable {
        case done(Outcome)
        /// This request runs the next statement, for itself and `others`.
        case lead(others: [Waiter])
    }

    let ledger: SpendLedger
    let maxBatch: Int
    /// A key is present while a statement for it is in flight; its value is the queue of requests waiting.
    let inFlight = NIOLockedValueBox([Key: [Waiter]]())
    let batches = Counter(label: "keybrake_begin_statements_total")
    let batchedRequests = Counter(label: "keybrake_begin_requests_total")

    init(ledger: SpendLedger, maxBatch: Int = 64) {
        self.ledger = ledger
        self.maxBatch = maxBatch
    }

    func begin(_ item: Item, key: Key, logger: Logger) async throws -> SpendLedger.BeginResult {
        let wake = await withCheckedContinuation { (continuation: CheckedContinuation<Wake, Never>) in
            let leads = inFlight.withLockedValue { queues -> Bool in
                if queues[key] != nil {
                    queues[key]!.append(Waiter(item: item, continuation: continuation))
                    return false
                }
                queues[key] = []
                return true
            }
            if leads { continuation.resume(returning: .lead(others: [])) }
        }
        switch wake {
        case .done(let outcome):
            return try outcome.get()
        case .lead(let others):
            let outcomes = await run([item] + others.map(\.item), key: key, logger: logger)
            for (waiter, outcome) in zip(others, outcomes.dropFirst()) { waiter.continuation.resume(returning: .done(outcome)) }
            handOver(key)
            return try outcomes[0].get()
        }
    }

    /// The first of the waiting requests (if any) runs the next statement for up to `maxBatch` of them.
    private func handOver(_ key: Key) {
        let next = inFlight.withLockedValue { queues -> (Waiter, [Waiter])? in
            guard let queue = queues[key], let first = queue.first else {
                queues[key] = nil
                return nil
            }
            let taken = queue.prefix(maxBatch)
            queues[key] = Array(queue.dropFirst(taken.count))
            return (first, Array(taken.dropFirst()))
        }
        if let (first, others) = next { first.continuation.resume(returning: .lead(others: others)) }
    }

    private func run(_ items: [Item], key: Key, logger: Logger) async -> [Outcome] {
        batches.increment()
        batchedRequests.increment(by: items.count)
        if items.count > 1 {
            do {
                return try await ledger.beginMany(items, key: key, logger: logger).map { .success($0) }
            } catch {
                // One bad item (or a deadlock with another replica's batch) fails the whole statement, and nothing
                // of it was committed: begin each on its own so each gets its own answer.
                logger.warning("batched begin failed; beginning one by one", metadata: ["requests": "\(items.count)"])
            }
        }
        var outcomes: [Outcome] = []
        for item in items {
            do {
                outcomes.append(.success(try await ledger.begin(
                    claims: item.claims, keyId: key.keyId, tenantId: key.tenantId, amount: item.amount, day: key.day,
                    month: key.month, usageMonth: key.usageMonth, freeQuota: key.freeQuota, ownerId: item.ownerId, logger: logger)))
            } catch {
                outcomes.append(.failure(error))
            }
        }
        return outcomes
    }
}
