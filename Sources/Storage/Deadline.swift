import Foundation
import KeybrakeCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Runs database work that must finish before a request may go upstream, with a deadline: past it the
/// caller gets 503 `unavailable` at once (fail closed) instead of waiting for Postgres to come back.
///
/// The work itself cannot always be interrupted (a statement may already be on the wire), so it keeps
/// running detached; if it later succeeds, `onLateSuccess` undoes its effect (releases a reservation,
/// drops a claim). Nothing is forwarded on behalf of a request that timed out here.
///
/// At the deadline the work is told to cancel (a wait for a pool connection then ends), unless `leavesWorkRunning`:
/// work that is still worth finishing after its caller has moved on (a settlement) goes on, detached.
///
/// The caller's cancellation ends the wait the same way, with `CancellationError`: the work is detached, so it would
/// not see the cancellation itself, and a replica told to stop must not wait out the deadline of every call in
/// flight (a pool probe waiting on an unreachable Postgres held a second signal's exit for seconds). The proxied
/// request's calls opt out (`hearsCancellation: false`, `ProxyPipeline.bounded`): see there.
///
/// Deadlines are enforced by one shared watchdog that ticks every `DeadlineWatchdog.tick` (so a deadline fires
/// up to one tick late). Per-call timers cost thread wake-ups on every database call — a sleeping task to start
/// and cancel, or an event-loop timer armed and disarmed from another thread — which `make bench` measured on
/// the hot path; registering with the watchdog is a locked dictionary insert and removal.
public enum Deadline {
    @discardableResult
    public static func run<T: Sendable>(
        _ limit: Duration,
        hearsCancellation: Bool = true,
        leavesWorkRunning: Bool = false,
        _ operation: @escaping @Sendable () async throws -> T,
        onLateSuccess: @escaping @Sendable (T) async -> Void = { _ in }
    ) async throws -> T {
        let call = Call<T>(cancelsWork: !leavesWorkRunning)
        guard hearsCancellation else { return try await call.run(limit, operation, onLateSuccess: onLateSuccess) }
        return try await withTaskCancellationHandler {
            try await call.run(limit, operation, onLateSuccess: onLateSuccess)
        } onCancel: {
            call.end(.failure(CancellationError()))
        }
    }

    /// One call's state: whichever of the work, the deadline and the caller's cancellation comes first resumes the
    /// caller, once; the other two then find it ended.
    final class Call<T: Sendable>: Sendable {
        struct State {
            var continuation: CheckedContinuation<T, any Error>?
            var ended: Result<T, any Error>?
            var work: Task<Void, Never>?
            var ticket: UInt64?
        }
        let state = NIOLockedValueBox(State())
        let cancelsWork: Bool

        init(cancelsWork: Bool) { self.cancelsWork = cancelsWork }

        /// Starts the work and its deadline and waits for the first of the three ends.
        func run(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T,
                 onLateSuccess: @escaping @Sendable (T) async -> Void) async throws -> T {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                guard attach(continuation) else { return }  // cancelled before it started
                let ticket = DeadlineWatchdog.shared.register(after: limit) { [self] in
                    end(.failure(KeybrakeError.unavailable))
                }
                let task = Task { [self] in
                    let result: Result<T, any Error>
                    do { result = .success(try await operation()) } catch { result = .failure(error) }
                    if end(result, byTheWork: true) {
                        DeadlineWatchdog.shared.cancel(ticket)
                    } else if case .success(let value) = result {
                        await onLateSuccess(value)
                    }
                }
                started(task, ticket: ticket)
            }
        }

        /// False when the call had already ended (the caller was cancelled first): the continuation is resumed here.
        func attach(_ continuation: CheckedContinuation<T, any Error>) -> Bool {
            let ended = state.withLockedValue { s -> Result<T, any Error>? in
                if s.ended == nil { s.continuation = continuation }
                return s.ended
            }
            guard let ended else { return true }
            continuation.resume(with: ended)
            return false
        }

        /// The work and its deadline, once both exist; a call that ended meanwhile cancels them (harmless when the
        /// work itself ended it).
        func started(_ work: Task<Void, Never>, ticket: UInt64) {
            let endedMeanwhile = state.withLockedValue { s -> Bool in
                s.work = work
                s.ticket = ticket
                return s.ended != nil
            }
            guard endedMeanwhile else { return }
            if cancelsWork { work.cancel() }
            DeadlineWatchdog.shared.cancel(ticket)
        }

        /// Ends the call with `result` unless it has ended already; true when this was the end. An end that is not
        /// the work's own cancels the work (unless it is left running) and its deadline.
        @discardableResult
        func end(_ result: Result<T, any Error>, byTheWork: Bool = false) -> Bool {
            let taken = state.withLockedValue { s -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?, UInt64?)? in
                guard s.ended == nil else { return nil }
                s.ended = result
                defer { s.continuation = nil }
                return (s.continuation, s.work, s.ticket)
            }
            guard let (continuation, work, ticket) = taken else { return false }
            if !byTheWork {
                if cancelsWork { work?.cancel() }
                if let ticket { DeadlineWatchdog.shared.cancel(ticket) }
            }
            continuation?.resume(with: result)
            return true
        }
    }
}

/// Fires registered callbacks once their deadline has passed; one repeating event-loop task for the process.
public final class DeadlineWatchdog: Sendable {
    public static let shared = DeadlineWatchdog(tick: .milliseconds(25))

    struct State {
        var next: UInt64 = 0
        var pending: [UInt64: (deadline: NIODeadline, fire: @Sendable () -> Void)] = [:]
        var ticking: RepeatedTask?
    }

    let tick: TimeAmount
    let state = NIOLockedValueBox(State())

    init(tick: TimeAmount) { self.tick = tick }

    /// Calls `fire` once `limit` has passed, unless cancelled first.
    public func register(after limit: Duration, _ fire: @escaping @Sendable () -> Void) -> UInt64 {
        let nanos = limit.nanoseconds
        let deadline = NIODeadline.now() + .nanoseconds(nanos)
        let (ticket, start) = state.withLockedValue { s -> (UInt64, Bool) in
            s.next &+= 1
            s.pending[s.next] = (deadline, fire)
            return (s.next, s.ticking == nil)
        }
        if start { startTicking() }
        return ticket
    }

    public func cancel(_ ticket: UInt64) {
        _ = state.withLockedValue { $0.pending.removeValue(forKey: ticket) }
    }

    private func startTicking() {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let task = loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [weak self] _ in self?.fireExpired() }
        let duplicate = state.withLockedValue { s -> Bool in
            if s.ticking != nil { return true }
            s.ticking = task
            return false
        }
        if duplicate { task.cancel() }
    }

    private func fireExpired() {
        let now = NIODeadline.now()
        let due = state.withLockedValue { s -> [@Sendable () -> Void] in
            var fired: [@Sendable () -> Void] = []
            for (ticket, entry) in s.pending where entry.deadline <= now {
                fired.append(entry.fire)
                s.pending.removeValue(forKey: ticket)
            }
            return fired
        }
        for fire in due { fire() }
    }
}

/// Background database work (lease sweeps, roll-ups, webhook passes) that graceful shutdown abandons at once.
/// `cancelWhenGracefulShutdown` alone is not enough: a query already sent on a connection whose network was cut
/// never answers, and PostgresNIO does not end a sent query on cancellation. So the work runs detached under `limit`
/// (`Deadline.run`: it is cancelled too, and a stuck pass ends at the limit instead of stopping the loop for good),
/// and the service gets `CancellationError` the moment shutdown begins.
@discardableResult
public func abandonedOnGracefulShutdown<T: Sendable>(
    within limit: Duration = .seconds(60), _ work: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await cancelWhenGracefulShutdown { try await Deadline.run(limit, work) }
}
