import NIOConcurrencyHelpers

/// Opportunistic batching ("group commit") of database calls. A call on an idle lane runs at once, alone; calls
/// that arrive while the lane's previous batch is in flight wait, then run together as the next batch (at most
/// `maxBatch`), driven by the first of them. Nothing ever waits for a timer, so an idle server answers exactly as
/// without batching, and a busy one makes one round trip and one commit for many requests.
///
/// `run` gets the batch in arrival order and returns one result per item, in the same order.
public final class Coalescer<Lane: Hashable & Sendable, Item: Sendable, Output: Sendable>: Sendable {
    public typealias Outcome = Result<Output, any Error>

    struct Waiter: Sendable {
        var item: Item
        var continuation: CheckedContinuation<Wake, Never>
    }

    enum Wake: Sendable {
        case done(Outcome)
        /// This call runs the next batch, for itself and `others`.
        case lead(others: [Waiter])
    }

    let maxBatch: Int
    let run: @Sendable ([Item], Lane) async -> [Outcome]
    /// A lane is present while one of its batches is in flight; its value is the queue of calls waiting.
    let lanes = NIOLockedValueBox([Lane: [Waiter]]())

    public init(maxBatch: Int, run: @escaping @Sendable (_ items: [Item], _ lane: Lane) async -> [Outcome]) {
        precondition(maxBatch >= 1)
        self.maxBatch = maxBatch
        self.run = run
    }

    public func submit(_ item: Item, lane: Lane) async throws -> Output {
        // Idle lane: run now, without suspending (a continuation resumed at once still costs a trip through the
        // executor, which showed as ~10 % of a sequential request).
        let idle = lanes.withLockedValue { lanes -> Bool in
            if lanes[lane] != nil { return false }
            lanes[lane] = []
            return true
        }
        if idle { return try await lead(item, others: [], lane: lane) }
        let wake = await withCheckedContinuation { (continuation: CheckedContinuation<Wake, Never>) in
            let leads = lanes.withLockedValue { lanes -> Bool in
                if lanes[lane] != nil {
                    lanes[lane]!.append(Waiter(item: item, continuation: continuation))
                    return false
                }
                lanes[lane] = []
                return true
            }
            if leads { continuation.resume(returning: .lead(others: [])) }
        }
        switch wake {
        case .done(let outcome):
            return try outcome.get()
        case .lead(let others):
            return try await lead(item, others: others, lane: lane)
        }
    }

    private func lead(_ item: Item, others: [Waiter], lane: Lane) async throws -> Output {
        var outcomes = await run(others.isEmpty ? [item] : [item] + others.map(\.item), lane)
        if outcomes.count != others.count + 1 {
            outcomes = Array(repeating: .failure(CoalescerError.resultCountMismatch), count: others.count + 1)
        }
        for (waiter, outcome) in zip(others, outcomes.dropFirst()) { waiter.continuation.resume(returning: .done(outcome)) }
        handOver(lane)
        return try outcomes[0].get()
    }

    /// The first waiting call (if any) runs the next batch, for up to `maxBatch` of the waiting calls.
    private func handOver(_ lane: Lane) {
        let next = lanes.withLockedValue { lanes -> (Waiter, [Waiter])? in
            guard let queue = lanes[lane], let first = queue.first else {
                lanes[lane] = nil
                return nil
            }
            let taken = queue.prefix(maxBatch)
            lanes[lane] = Array(queue.dropFirst(taken.count))
            return (first, Array(taken.dropFirst()))
        }
        if let (first, others) = next { first.continuation.resume(returning: .lead(others: others)) }
    }
}

public enum CoalescerError: Error {
    /// A batch function returned a different number of results than it was given items (a bug).
    case resultCountMismatch
}
