import Hummingbird
import KeybrakeCore
import NIOConcurrencyHelpers

/// Whether this replica takes requests. Not before the database has answered with the schema in place (start-up:
/// the HTTP listener is up from the first second, but requests that need Postgres are refused at once, fail
/// closed), and not once the process is asked to stop (SIGTERM): then `/ready` answers 503 (the load balancer takes
/// the replica out) and new proxy requests get 503 with `Retry-After` (another replica takes them), while the
/// requests already in flight finish and settle.
public final class Drain: Sendable {
    /// Why `/ready` says 503: the `reason` field of its answer.
    public enum Reason: String, Sendable, Equatable {
        case databaseUnreachable = "database_unreachable"
        case schemaMissing = "schema_missing"
        case draining
    }

    struct State {
        var draining = false
        /// nil once the database was reached with the schema in place; set again never (after that, each request
        /// finds out for itself and fails closed within its database deadline).
        var startup: (reason: Reason, message: String)? = (.databaseUnreachable, "Connecting to the database.")
    }

    private let state: NIOLockedValueBox<State>

    /// `started: true` skips the start-up gate (tests that build the app on a database they already migrated).
    public init(started: Bool = false) {
        var initial = State()
        if started { initial.startup = nil }
        state = NIOLockedValueBox(initial)
    }

    public var isDraining: Bool { state.withLockedValue { $0.draining } }

    public func start() { state.withLockedValue { $0.draining = true } }

    /// True once the database has been reached with the schema in place.
    public var isStarted: Bool { state.withLockedValue { $0.startup == nil } }

    /// Start-up: what stops this replica from serving yet.
    public func waiting(_ reason: Reason, _ message: String) {
        state.withLockedValue { if $0.startup != nil { $0.startup = (reason, message) } }
    }

    public func started() { state.withLockedValue { $0.startup = nil } }

    /// Why the replica does not take requests now, or nil when it does.
    public var notReady: (reason: Reason, message: String)? {
        state.withLockedValue { s in
            if s.draining { return (.draining, "This replica is shutting down.") }
            return s.startup
        }
    }

    /// The answer for a request that arrives while the replica does not take requests: `shutting_down` while it
    /// drains, `unavailable` (fail closed: nothing read, reserved or sent) while it waits for its database.
    public var refusal: KeybrakeError? {
        guard let (reason, message) = notReady else { return nil }
        return Self.refusal(reason, message)
    }

    /// The refusal for a replica that is not ready for `reason` (`/ready` sends its code as `Keybrake-Error-Code`).
    public static func refusal(_ reason: Reason, _ message: String) -> KeybrakeError {
        if reason == .draining { return .shuttingDown }
        return KeybrakeError(status: 503, code: .unavailable,
                             message: "This Keybrake replica cannot serve yet (\(reason.rawValue): \(message)); nothing was sent. Retry.",
                             retryAfterSeconds: 1)
    }

    /// Polls until the replica has started (services that need the schema wait here). False when the task was
    /// cancelled first.
    public func waitUntilStarted() async -> Bool {
        while !isStarted {
            do { try await Task.sleep(for: .milliseconds(100)) } catch { return false }
        }
        return true
    }
}

/// Until the replica has started, refuses every request that would need Postgres with 503 `unavailable` at once,
/// instead of letting it wait on a database that is not there (and send PostgresNIO's pool into its backoff, which
/// would then delay the first requests after Postgres returns). Liveness, readiness and metrics always answer; proxy
/// paths are let through to the pipeline, which refuses them in the vendor's own error envelope.
public struct StartupGateMiddleware: RouterMiddleware {
    public typealias Context = KeybrakeRequestContext
    let drain: Drain

    public init(drain: Drain) { self.drain = drain }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if drain.isStarted { return try await next(request, context) }
        let path = request.uri.path
        if Self.alwaysAnswered.contains(path) { return try await next(request, context) }
        let first = path.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        if Vendor(rawValue: first) != nil { return try await next(request, context) }
        guard let refusal = drain.refusal else { return try await next(request, context) }
        throw refusal
    }

    static let alwaysAnswered: Set<String> = ["/health", "/ready", "/metrics"]
}
