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
        /// This call runs the next batch (of `slot`), for itself and `others`.
        case lead(others: [Waiter], slot: UInt64)
    }

    /// The batch in flight on a lane (or being handed over), and the calls waiting for the next one.
    struct Slot: Sendable {
        var id: UInt64
        var started: ContinuousClock.Instant
        var waiting: [Waiter]
    }

    let maxBatch: Int
    let staleAfter: Duration
    let run: @Sendable ([Item], Lane) async -> [Outcome]
    let lanes = NIOLockedValueBox(([Lane: Slot](), UInt64(0)))

    /// A batch in flight for longer than `staleAfter` no longer holds its lane: the next call starts a new batch
    /// (taking over the calls queued behind the old one). A database call that hangs — a lease the pool is slow to
    /// grant after an outage — then delays only its own batch, as it would without batching.
    public init(maxBatch: Int, staleAfter: Duration = .seconds(1),
                run: @escaping @Sendable (_ items: [Item], _ lane: Lane) async -> [Outcome]) {
        precondition(maxBatch >= 1)
        self.maxBatch = maxBatch
        self.staleAfter = staleAfter
        self.run = run
    }

    public func submit(_ item: Item, lane: Lane) async throws -> Output {
        // Idle lane: run now, without suspending (a continuation resumed at once still costs a trip through the
        // executor, which showed as ~10 % of a sequential request).
        let now = ContinuousClock.now
        let claimed = lanes.withLockedValue { state -> (UInt64, [Waiter])? in
            if let slot = state.0[lane], now - slot.started < staleAfter { return nil }
            return Self.newSlot(&state, lane: lane, now: now, maxBatch: maxBatch)
        }
        if let (slot, others) = claimed { return try await lead(item, others: others, lane: lane, slot: slot) }
        let wake = await withCheckedContinuation { (continuation: CheckedContinuation<Wake, Never>) in
            let claimed = lanes.withLockedValue { state -> (UInt64, [Waiter])? in
                let now = ContinuousClock.now
                if let slot = state.0[lane], now - slot.started < staleAfter {
                    state.0[lane]!.waiting.append(Waiter(item: item, continuation: continuation))
                    return nil
                }
                return Self.newSlot(&state, lane: lane, now: now, maxBatch: maxBatch)
            }
            if let (slot, others) = claimed { continuation.resume(returning: .lead(others: others, slot: slot)) }
        }
        switch wake {
        case .done(let outcome):
            return try outcome.get()
        case .lead(let others, let slot):
            return try await lead(item, others: others, lane: lane, slot: slot)
        }
    }

    /// A new batch on the lane; the calls left waiting behind a stale batch join it.
    private static func newSlot(_ state: inout ([Lane: Slot], UInt64), lane: Lane, now: ContinuousClock.Instant,
                                maxBatch: Int) -> (UInt64, [Waiter]) {
        state.1 &+= 1
        let stranded = state.0[lane]?.waiting ?? []
        let joining = Array(stranded.prefix(maxBatch - 1))
        state.0[lane] = Slot(id: state.1, started: now, waiting: Array(stranded.dropFirst(joining.count)))
        return (state.1, joining)
    }

    private func lead(_ item: Item, others: [Waiter], lane: Lane, slot: UInt64) async throws -> Output {
        var outcomes = await run(others.isEmpty ? [item] : [item] + others.map(\.item), lane)
        if outcomes.count != others.count + 1 {
            outcomes = Array(repeating: .failure(CoalescerError.resultCountMismatch), count: others.count + 1)
        }
        for (waiter, outcome) in zip(others, outcomes.dropFirst()) { waiter.continuation.resume(returning: .done(outcome)) }
        handOver(lane, slot: slot)
        return try outcomes[0].get()
    }

    /// The first waiting call (if any) runs the next batch, for up to `maxBatch` of the waiting calls. A batch that
    /// went stale and was replaced hands over nothing: its lane belongs to the newer batch.
    private func handOver(_ lane: Lane, slot: UInt64) {
        let next = lanes.withLockedValue { state -> (Waiter, [Waiter])? in
            guard let current = state.0[lane], current.id == slot else { return nil }
            guard let first = current.waiting.first else {
                state.0[lane] = nil
                return nil
            }
            let taken = current.waiting.prefix(maxBatch)
            state.0[lane] = Slot(id: slot, started: ContinuousClock.now, waiting: Array(current.waiting.dropFirst(taken.count)))
            return (first, Array(taken.dropFirst()))
        }
        if let (first, others) = next { first.continuation.resume(returning: .lead(others: others, slot: slot)) }
    }
}

public enum CoalescerError: Error {
    /// A batch function returned a different number of results than it was given items (a bug).
    case resultCountMismatch
}
