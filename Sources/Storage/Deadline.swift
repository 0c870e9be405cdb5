import Foundation
import KeybrakeCore
import NIOConcurrencyHelpers

/// Runs database work that must finish before a request may go upstream, with a deadline: past it the
/// caller gets 503 `unavailable` at once (fail closed) instead of waiting for Postgres to come back.
///
/// The work itself cannot always be interrupted (a statement may already be on the wire), so it keeps
/// running detached; if it later succeeds, `onLateSuccess` undoes its effect (releases a reservation,
/// drops a claim). Nothing is forwarded on behalf of a request that timed out here.
public enum Deadline {
    public static func run<T: Sendable>(
        _ limit: Duration,
        _ operation: @escaping @Sendable () async throws -> T,
        onLateSuccess: @escaping @Sendable (T) async -> Void = { _ in }
    ) async throws -> T {
        let settled = NIOLockedValueBox(false)
        let timer = NIOLockedValueBox<Task<Void, Never>?>(nil)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let work = Task {
                let result: Result<T, any Error>
                do { result = .success(try await operation()) } catch { result = .failure(error) }
                let first = settled.withLockedValue { done -> Bool in
                    defer { done = true }
                    return !done
                }
                if first {
                    timer.withLockedValue { $0?.cancel() }
                    continuation.resume(with: result)
                } else if case .success(let value) = result {
                    await onLateSuccess(value)
                }
            }
            let sleeper = Task {
                try? await Task.sleep(for: limit)
                guard !Task.isCancelled else { return }
                let first = settled.withLockedValue { done -> Bool in
                    defer { done = true }
                    return !done
                }
                if first {
                    work.cancel()
                    continuation.resume(throwing: KeybrakeError.unavailable)
                }
            }
            timer.withLockedValue { $0 = sleeper }
        }
    }
}
