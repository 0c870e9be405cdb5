import Audit
import KeybrakeCore
import Logging
import Metrics
import Storage

/// Group commit for one hot key. Requests that claim their idempotency records and reserve their amount on a key
/// while this replica's previous claim-and-reserve for that key is still in flight wait, then go together in one
/// statement (kb_claim_and_reserve_many): one round trip, one commit and one lock of the key's counters for all of
/// them, instead of each queueing on that lock inside Postgres (where waiting costs CPU and every commit waits for its
/// own fsync while holding the lock).
///
/// Nothing waits when the key is idle: a lone request is sent at once (kb_claim_and_reserve). Items are processed in
/// arrival order, each exactly as kb_claim_and_reserve would process it, so caps, quota and idempotency are what they
/// are one by one. Replicas do not coordinate; across replicas the counters' row lock still serialises the batches.
final class ClaimReserveBatcher: Sendable {
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

    let coalescer: Coalescer<Key, Item, SpendLedger.ClaimReserveResult>

    init(ledger: SpendLedger, maxBatch: Int = 64) {
        // The metrics keep the names they were published under (README "Metrics").
        let statements = Counter(label: "keybrake_begin_statements_total")
        let requests = Counter(label: "keybrake_begin_requests_total")
        coalescer = Coalescer(maxBatch: maxBatch) { items, key in
            statements.increment()
            requests.increment(by: items.count)
            let logger = items[0].logger
            if items.count > 1 {
                do {
                    return try await ledger.claimAndReserveMany(items, key: key, logger: logger).map { .success($0) }
                } catch {
                    // One bad item (or a deadlock with another replica's batch) fails the whole statement, and
                    // nothing of it was committed: send each on its own so each gets its own answer.
                    logger.warning("batched claim-and-reserve failed; sending one by one", metadata: ["requests": "\(items.count)"])
                }
            }
            var outcomes: [Result<SpendLedger.ClaimReserveResult, any Error>] = []
            for item in items {
                do {
                    outcomes.append(.success(try await ledger.claimAndReserve(item, key: key)))
                } catch {
                    outcomes.append(.failure(error))
                }
            }
            return outcomes
        }
    }

    func claimAndReserve(_ item: Item, key: Key) async throws -> SpendLedger.ClaimReserveResult {
        try await coalescer.submit(item, lane: key)
    }
}
