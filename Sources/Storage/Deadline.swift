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
/// The timer is a NIO scheduled task on the shared event loops, not a second Swift task: a sleeping task
/// that is cancelled when the work finishes first costs two extra thread wake-ups on every call (measured
/// with `make bench`), a scheduled task costs a heap insert and a removal.
public enum Deadline {
    public static func run<T: Sendable>(
        _ limit: Duration,
        _ operation: @escaping @Sendable () async throws -> T,
        onLateSuccess: @escaping @Sendable (T) async -> Void = { _ in }
    ) async throws -> T {
        let settled = NIOLockedValueBox(false)
        let eventLoop = MultiThreadedEventLoopGroup.singleton.any()
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let work = NIOLockedValueBox<Task<Void, Never>?>(nil)
            let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(limit.components.seconds) * 1_000_000_000
                                                               + limit.components.attoseconds / 1_000_000_000)) {
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
                    timer.cancel()
                    continuation.resume(with: result)
                } else if case .success(let value) = result {
                    await onLateSuccess(value)
                }
            }
            work.withLockedValue { $0 = task }
        }
    }
}
