import NIOConcurrencyHelpers

/// A counting semaphore for async code: at most `permits` bodies run at once, the rest wait in FIFO order.
final class AsyncSemaphore: Sendable {
    struct State {
        var available: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    let state: NIOLockedValueBox<State>

    init(permits: Int) { state = NIOLockedValueBox(State(available: permits)) }

    func withPermit<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    func acquire() async {
        let acquired = state.withLockedValue { s -> Bool in
            if s.available > 0 { s.available -= 1; return true }
            return false
        }
        if acquired { return }
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLockedValue { s -> Bool in
                // A permit may have been released between the two locks.
                if s.available > 0 { s.available -= 1; return true }
                s.waiters.append(cont)
                return false
            }
            if resumeNow { cont.resume() }
        }
    }

    func release() {
        let next = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty { s.available += 1; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
