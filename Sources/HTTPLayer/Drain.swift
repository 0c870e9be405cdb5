import NIOConcurrencyHelpers

/// Set once, when the process is asked to stop (SIGTERM): from then on `/ready` answers 503 (the load balancer takes
/// the replica out) and new proxy requests get 503 with `Retry-After` (another replica takes them), while the
/// requests already in flight finish and settle.
public final class Drain: Sendable {
    private let draining = NIOLockedValueBox(false)

    public init() {}

    public var isDraining: Bool { draining.withLockedValue { $0 } }

    public func start() { draining.withLockedValue { $0 = true } }
}
