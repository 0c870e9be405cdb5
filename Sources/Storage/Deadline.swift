import Foundation
import KeybrakeCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Runs database work that must finish before a request may go upstream, with a deadline: past it the
/// caller gets 503 `unavailable` at once (fail closed) instead of waiting for Postgres to come back.
///
/// The work itself cannot always be interrupted (a statement may already be on the wire), so it keeps
/// running detached; if it later succeeds, `onLateSuccess` undoes its effect (releases a reservation,
/// drops a claim). Nothing is forwarded on behalf of a request that timed out here.
///
/// Deadlines are enforced by one shared watchdog that ticks every `DeadlineWatchdog.tick` (so a deadline fires
/// up to one tick late). Per-call timers cost thread wake-ups on every database call — a sleeping task to start
/// and cancel, or an event-loop timer armed and disarmed from another thread — which `make bench` measured on
/// the hot path; registering with the watchdog is a locked dictionary insert and removal.
public enum Deadline {
    public static func run<T: Sendable>(
        _ limit: Duration,
        _ operation: @escaping @Sendable () async throws -> T,
        onLateSuccess: @escaping @Sendable (T) async -> Void = { _ in }
    ) async throws -> T {
        let settled = NIOLockedValueBox(false)
        let work = NIOLockedValueBox<Task<Void, Never>?>(nil)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let ticket = DeadlineWatchdog.shared.register(after: limit) {
                let first = settled.withLockedValue { done -> Bool in
                    defer { done = true }
                    return !done
                }
                if first {
                    work.withLockedValue { $0?.cancel() }
                    continuation.resume(throwing: KeybrakeError.unavailable)
                }
            }
            let task = Task {
                let result: Result<T, any Error>
                do { result = .success(try await operation()) } catch { result = .failure(error) }
                let first = settled.withLockedValue { done -> Bool in
                    defer { done = true }
                    return !done
                }
                if first {
                    DeadlineWatchdog.shared.cancel(ticket)
                    continuation.resume(with: result)
                } else if case .success(let value) = result {
                    await onLateSuccess(value)
                }
            }
            work.withLockedValue { $0 = task }
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
