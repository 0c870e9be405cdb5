import Audit
import KeybrakeCore
import Logging
import Metrics
import Storage

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
        /// The request's audit row, written with its reservation (before it is forwarded).
        var pending: AuditEvent
        var logger: Logger
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

    let coalescer: Coalescer<Key, Item, SpendLedger.BeginResult>

    init(ledger: SpendLedger, maxBatch: Int = 64) {
        let statements = Counter(label: "keybrake_begin_statements_total")
        let requests = Counter(label: "keybrake_begin_requests_total")
        coalescer = Coalescer(maxBatch: maxBatch) { items, key in
            statements.increment()
            requests.increment(by: items.count)
            let logger = items[0].logger
            if items.count > 1 {
                do {
                    return try await ledger.beginMany(items, key: key, logger: logger).map { .success($0) }
                } catch {
                    // One bad item (or a deadlock with another replica's batch) fails the whole statement, and
                    // nothing of it was committed: begin each on its own so each gets its own answer.
                    logger.warning("batched begin failed; beginning one by one", metadata: ["requests": "\(items.count)"])
                }
            }
            var outcomes: [Result<SpendLedger.BeginResult, any Error>] = []
            for item in items {
                do {
                    outcomes.append(.success(try await ledger.begin(item, key: key)))
                } catch {
                    outcomes.append(.failure(error))
                }
            }
            return outcomes
        }
    }

    func begin(_ item: Item, key: Key) async throws -> SpendLedger.BeginResult {
        try await coalescer.submit(item, lane: key)
    }
}
