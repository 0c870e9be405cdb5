import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// One vendor's upstream connections: a budget of requests in flight, spread over shards of AsyncHTTPClient.
///
/// Why shards: AsyncHTTPClient 1.37 keeps ONE HTTP/2 connection per host and queues requests once its streams are
/// full (`HTTPConnectionPool.HTTP2StateMachine.executeRequest`: a new connection is made only when none "can or
/// will be able to execute requests"). Each shard is its own `HTTPClient` (its own pool, so its own HTTP/2
/// connection, or its own HTTP/1.1 connections), and a request goes to the first shard with fewer than
/// `streamsPerConnection` requests in flight: requests pack onto as few connections as the load needs, a new
/// shard (so a new connection) opens only when the others are full, and all shards share the process's event
/// loops. Over HTTP/1.1 the same budget is the connection ceiling.
///
/// The budget: at most `limit` requests in flight; the next ones wait, first come first served, at most
/// `busyWait` (and at most `maxWaiting` of them), then are refused — the caller answers 503 `upstream_busy`,
/// nothing sent. Never an unbounded queue.
final class UpstreamPool: Sendable {
    let limit: Int
    let perShard: Int
    let busyWait: TimeAmount
    let maxWaiting: Int
    let makeClient: @Sendable () -> HTTPClient
    private let state = NIOLockedValueBox(State())

    struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Int?, Never>
        var timer: Scheduled<Void>?
    }

    struct State {
        var inFlight = 0
        var load: [Int] = []
        var clients: [HTTPClient] = []
        var waiters = CircularBuffer<Waiter>()
        var nextId: UInt64 = 0
        var closed = false

        /// The first shard with room (a new one when all are full). Callers keep `inFlight ≤ limit`, so with
        /// `⌈limit / perShard⌉` shards at most there is always one.
        mutating func take(perShard: Int, makeClient: () -> HTTPClient) -> Int {
            if let i = load.firstIndex(where: { $0 < perShard }) {
                load[i] += 1
                return i
            }
            clients.append(makeClient())
            load.append(1)
            return load.count - 1
        }
    }

    /// A slot in the budget on one shard; give it back with `release` exactly once.
    struct Lease: Sendable {
        let shard: Int
        let client: HTTPClient
    }

    init(limit: Int, perShard: Int, busyWait: Duration, maxWaiting: Int, makeClient: @escaping @Sendable () -> HTTPClient) {
        self.limit = max(1, limit)
        self.perShard = max(1, perShard)
        self.busyWait = .nanoseconds(busyWait.nanoseconds)
        self.maxWaiting = max(0, maxWaiting)
        self.makeClient = makeClient
    }

    /// A slot, or nil when none came free within `busyWait` (or the queue is full, or the pool is shut down).
    func acquire() async -> Lease? {
        enum Fast { case granted(Int), wait, busy }
        let fast: Fast = state.withLockedValue { s in
            if s.closed { return .busy }
            if s.inFlight < limit, s.waiters.isEmpty {
                s.inFlight += 1
                return .granted(s.take(perShard: perShard, makeClient: makeClient))
            }
            return s.waiters.count < maxWaiting && busyWait > .zero ? .wait : .busy
        }
        switch fast {
        case .granted(let shard): return lease(shard)
        case .busy: return nil
        case .wait: break
        }
        let id = state.withLockedValue { s in s.nextId += 1; return s.nextId }
        let shard: Int? = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Int?, Never>) in
                enum Next { case resume(Int?), enqueued }
                let next: Next = state.withLockedValue { s in
                    if s.closed { return .resume(nil) }
                    if s.inFlight < limit, s.waiters.isEmpty {
                        s.inFlight += 1
                        return .resume(s.take(perShard: perShard, makeClient: makeClient))
                    }
                    guard s.waiters.count < maxWaiting else { return .resume(nil) }
                    s.waiters.append(Waiter(id: id, continuation: continuation, timer: nil))
                    return .enqueued
                }
                switch next {
                case .resume(let shard): continuation.resume(returning: shard)
                case .enqueued:
                    let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: busyWait) { [self] in giveUp(id) }
                    state.withLockedValue { s in
                        if let i = s.waiters.firstIndex(where: { $0.id == id }) { s.waiters[i].timer = timer }
                    }
                }
            }
        } onCancel: {
            giveUp(id)
        }
        return shard.map(lease)
    }

    private func lease(_ shard: Int) -> Lease {
        Lease(shard: shard, client: state.withLockedValue { $0.clients[shard] })
    }

    /// A waiter whose time ran out (or whose task was cancelled): it gets nil, unless a slot reached it first.
    private func giveUp(_ id: UInt64) {
        let waiter: Waiter? = state.withLockedValue { s in
            guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return s.waiters.remove(at: i)
        }
        guard let waiter else { return }
        waiter.timer?.cancel()
        waiter.continuation.resume(returning: nil)
    }

    /// Gives a slot back: straight to the longest waiter if there is one.
    func release(_ lease: Lease) {
        let handed: (Waiter, Int)? = state.withLockedValue { s in
            s.load[lease.shard] -= 1
            guard !s.waiters.isEmpty else {
                s.inFlight -= 1
                return nil
            }
            let waiter = s.waiters.removeFirst()
            return (waiter, s.take(perShard: perShard, makeClient: makeClient))
        }
        guard let (waiter, shard) = handed else { return }
        waiter.timer?.cancel()
        waiter.continuation.resume(returning: shard)
    }

    /// Requests in flight and waiting, and shards open (for metrics and tests).
    var snapshot: (inFlight: Int, waiting: Int, shards: Int) {
        state.withLockedValue { ($0.inFlight, $0.waiters.count, $0.clients.count) }
    }

    func shutdown() async throws {
        let (clients, waiters): ([HTTPClient], [Waiter]) = state.withLockedValue { s in
            s.closed = true
            let w = Array(s.waiters)
            s.waiters.removeAll()
            return (s.clients, w)
        }
        for waiter in waiters {
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: nil)
        }
        for client in clients { try await client.shutdown() }
    }
}
