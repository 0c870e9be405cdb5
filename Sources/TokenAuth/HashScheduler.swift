import NIOConcurrencyHelpers

/// The argon2 cores, shared fairly (DESIGN §4 "Hashing is shared fairly between tenants").
///
/// At most `permits` hashes run at once. Waiting hashes are served round-robin over tenants (then over client
/// addresses within a tenant), so one tenant minting hundreds of keys waits behind its own work while another
/// tenant's first request gets the next free core. Verifying a presented token goes before hashing a new one for
/// storage: a request is waiting on it, inside the database deadline. A waiter whose request is cancelled (client
/// gone, deadline passed) leaves the line at once and never hashes.
final class HashScheduler: Sendable {
    enum Kind: Sendable { case verify, store }

    struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    struct State {
        var available: Int
        var nextId: UInt64 = 0
        var verifications = FairQueue<Waiter>()
        var storage = FairQueue<Waiter>()

        mutating func next() -> Waiter? { verifications.popNext() ?? storage.popNext() }
    }

    let state: NIOLockedValueBox<State>

    init(permits: Int) { state = NIOLockedValueBox(State(available: max(1, permits))) }

    /// Runs `body` holding one core's permit. Throws `CancellationError` if the task is cancelled while waiting.
    func withPermit<T: Sendable>(_ kind: Kind, tenant: String, client: String, _ body: () async throws -> T) async throws -> T {
        try await acquire(kind, tenant: tenant, client: client)
        defer { release() }
        return try await body()
    }

    func acquire(_ kind: Kind, tenant: String, client: String) async throws {
        let id = state.withLockedValue { s -> UInt64? in
            if s.available > 0 { s.available -= 1; return nil }
            s.nextId &+= 1
            return s.nextId
        }
        guard let id else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Now { case acquired, cancelled, waiting }
                let now = state.withLockedValue { s -> Now in
                    // A permit may have been released between the two locks; the task may have been cancelled (its
                    // handler then found nothing to remove): both are decided under the lock the handler takes.
                    if Task.isCancelled { return .cancelled }
                    if s.available > 0 { s.available -= 1; return .acquired }
                    let waiter = Waiter(id: id, continuation: continuation)
                    switch kind {
                    case .verify: s.verifications.append(waiter, share: tenant, flow: client)
                    case .store: s.storage.append(waiter, share: tenant, flow: tenant)
                    }
                    return .waiting
                }
                switch now {
                case .acquired: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .waiting: break
                }
            }
        } onCancel: {
            let waiter = state.withLockedValue { s in
                s.verifications.remove { $0.id == id } ?? s.storage.remove { $0.id == id }
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Hands the permit to the next waiter in fair order, or returns it.
    func release() {
        let next = state.withLockedValue { s -> Waiter? in
            if let waiter = s.next() { return waiter }
            s.available += 1
            return nil
        }
        next?.continuation.resume()
    }

    /// Hashes waiting for a core (tests).
    var waiting: Int { state.withLockedValue { $0.verifications.count + $0.storage.count } }
}
