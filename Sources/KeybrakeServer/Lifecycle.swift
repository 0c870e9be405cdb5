import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Logging
import PostgresNIO
import ServiceLifecycle
import Storage
import UnixSignals

/// How `serve` comes up (README "Operations"): the HTTP listener first, the database after it. Until Postgres has
/// answered with the schema in place, `/health` says 200, `/ready` says 503 with its reason and everything that needs
/// Postgres is refused at once with 503 `unavailable`.
public struct StartupPlan: Sendable {
    /// Applies pending migrations once Postgres answers (nil: `serve --no-migrate`, another process migrates).
    public var migrator: Migrator?
    /// The newest migration this build needs; the replica waits (`schema_missing`) until the database has it.
    public var requiredVersion: Int
    /// Between two connection attempts: a replica is ready this soon after Postgres comes back.
    public var retryInterval: Duration = .milliseconds(500)

    public init(migrator: Migrator?, requiredVersion: Int) {
        self.migrator = migrator
        self.requiredVersion = requiredVersion
    }
}

/// Brings the replica up: connects (one direct connection with a deadline, see `DatabaseProbe`), migrates if asked,
/// checks the schema, then opens the start-up gate. Each state is logged once, when it changes (an outage or a
/// missing schema is one line, not one line per attempt). None of this touches the pool: it is first used after
/// Postgres has answered, so it never starts in PostgresNIO's backoff.
struct DatabaseStartupService: Service {
    let url: DatabaseURL
    let plan: StartupPlan
    let drain: Drain
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown { try await bringUp() }
        // A service that returns stops the whole group: stay until shutdown.
        try? await gracefulShutdown()
    }

    func bringUp() async throws {
        var said = ""
        func sayOnce(_ level: Logger.Level, _ message: String) {
            guard message != said else { return }
            said = message
            logger.log(level: level, "\(message)")
        }
        while !Task.isCancelled {
            do {
                let connection = try await DatabaseProbe.connect(url, logger: logger)
                let ready: Bool
                do { ready = try await prepare(connection, sayOnce) } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
                if ready {
                    drain.started()
                    logger.info("database ready: serving", metadata: ["database": "\(url.redacted)"])
                    return
                }
            } catch let error as DatabaseConnectError {
                drain.waiting(.databaseUnreachable, error.description)
                sayOnce(.error, "\(error.description); /ready answers 503 database_unreachable until it answers")
            } catch is CancellationError {
                return
            } catch let error as PSQLError where Self.isMigrationFailure(error) {
                logger.critical("migrations failed", metadata: ["sqlstate": "\(error.serverInfo?[.sqlState] ?? "-")",
                                                                "detail": "\(error.serverInfo?[.message] ?? "\(error.code)")"])
                throw error
            } catch {
                // The connection broke between the probe and the schema check (Postgres stopping, a failover).
                let failure = DatabaseProbe.classify(error, url: url)
                drain.waiting(.databaseUnreachable, failure.description)
                sayOnce(.error, "\(failure.description); /ready answers 503 database_unreachable until it answers")
            }
            try? await Task.sleep(for: plan.retryInterval)
        }
    }

    /// Migrates (if asked) and checks the schema on the probe's connection; true when the replica can serve.
    func prepare(_ connection: PostgresConnection, _ sayOnce: (Logger.Level, String) -> Void) async throws -> Bool {
        if let migrator = plan.migrator {
            drain.waiting(.schemaMissing, "Applying migrations (or waiting for another replica's).")
            let applied = try await migrator.apply(connection: connection, logger: logger)
            logger.info("migrations up to date", metadata: ["applied": "\(applied.versions)", "functions": "\(applied.functions)"])
        }
        let version = try await Migrator.appliedVersion(connection: connection, logger: logger)
        if let version, version >= plan.requiredVersion { return true }
        let message = version.map { "the database schema is at migration \($0), this build needs \(plan.requiredVersion)" }
            ?? "the database has no Keybrake schema yet"
        drain.waiting(.schemaMissing, message.prefix(1).uppercased() + message.dropFirst() + ".")
        sayOnce(.warning, "\(message): run `keybrake migrate`; waiting for it (/ready answers 503 schema_missing)")
        return false
    }

    /// A statement of a migration failed (not the connection): retrying will not help, so `serve` stops.
    static func isMigrationFailure(_ error: PSQLError) -> Bool {
        guard error.code == .server, let state = error.serverInfo?[.sqlState] else { return false }
        return !(state.hasPrefix("08") || state.hasPrefix("57P") || state.hasPrefix("53"))
    }
}

/// Runs the application under bounds, whatever the database does (README "Operations", DESIGN §7):
///
/// - SIGTERM or SIGINT: graceful shutdown. `/ready` and new proxy requests say 503 at once, the listener closes, the
///   requests in flight finish (each bounded by the upstream timeout), then the services stop and the pools close.
///   swift-service-lifecycle's `maximumGracefulShutdownDuration` bounds all of it; past it the group is cancelled.
/// - A second SIGTERM or SIGINT during that drain: the group is cancelled at once (requests in flight are left to
///   their leases, which another replica turns into `outcome_unknown`). Lifecycle's own `cancellationSignals` cannot
///   express "the second one": its signal listener stops after the first signal and a signal may not be both kinds,
///   so `StopSignalService` hears the second one and fails, which cancels the group (`.cancelGroup`). Lifecycle arms
///   no cancellation timeout on that path, and a wait may not let go (PostgresNIO does not end a query already sent
///   when its task is cancelled; closing the pool does), so `StopSignalService.hardStopAfter` later the process ends
///   itself with the same exit code, as `kill -9` would end it.
/// - Cancellation itself is bounded by `maximumCancellationDuration`: past it lifecycle ends the process with a
///   fatal error, the last resort if some task ignored cancellation.
///
/// What PostgresNIO needed to let go with Postgres down (issue 27: a replica that had served never exited; with
/// debug logs, graceful shutdown stopped at `LeaseSweepService` and never reached the pool):
/// - A query waiting for a pool connection ends only with a connection, the pool's circuit breaker (after about a
///   minute of failed attempts, and again after the next retry), the cancellation of its task, or the pool's shutdown.
///   The pool (`PostgresClient.run()`, which cancels itself on graceful shutdown and then fails every waiting lease
///   with `poolClosed`) is the first service, so it is shut down last, after the services still waiting on it. So
///   every background query runs inside `cancelWhenGracefulShutdown` (lease sweep, audit partitions), and requests
///   still waiting on the pool when the drain's bound passes are cancelled (a lease request honours cancellation).
/// - The pool's `run()` returns once its connection attempts in progress end: each is bounded by `connectTimeout`
///   (`KEYBRAKE_DATABASE_CONNECT_TIMEOUT_MS`), which covers TCP, TLS and the start-up handshake.
/// - The key-change listener's connection of its own: `PostgresConnection.connect` honours cancellation, its
///   reconnect loop checks for it, and its goodbye through the pool has a one-second deadline.
public func runServer(_ app: some ApplicationProtocol, drain: Drain, shutdownTimeout: Duration, logger: Logger) async throws {
    let signals = StopSignalService(drain: drain, logger: logger)
    var configuration = ServiceGroupConfiguration(
        services: [.init(service: signals), .init(service: app)],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger
    )
    configuration.maximumGracefulShutdownDuration = shutdownTimeout
    configuration.maximumCancellationDuration = .seconds(2)
    try await ServiceGroup(configuration: configuration).run()
}

/// Hears SIGTERM and SIGINT beside lifecycle's own handler. The first marks the replica as draining the moment it
/// arrives (graceful shutdown reaches the HTTP server's services in order, and `/ready` and the proxy must say 503
/// during that drain, not after it); a second one throws `StopNow`, which cancels the group.
struct StopSignalService: Service {
    let drain: Drain
    let logger: Logger

    /// The process was told twice: exit with 128 + the signal's number, as a shell reports a process it killed.
    struct StopNow: Error, CustomStringConvertible {
        let signal: UnixSignal
        var exitCode: Int32 { 128 + Int32(signal.rawValue) }
        var description: String { "stopped at once by a second \(signal)" }
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        let drain = self.drain, logger = self.logger
        // Ends when the group has shut everything else down (this service is first, so it is stopped last) or
        // throws on the second signal.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var seen = 0
                for await signal in signals {
                    seen += 1
                    if seen == 1 {
                        drain.start()
                        logger.info("shutting down (\(signal)): /ready answers 503, new proxy requests get 503, requests in flight finish; a second SIGTERM or SIGINT stops at once")
                    } else {
                        logger.warning("second \(signal): stopping now; requests in flight are left to their leases")
                        let stop = StopNow(signal: signal)
                        Self.exitIfStillRunning(after: Self.hardStopAfter, code: stop.exitCode, logger: logger)
                        throw stop
                    }
                }
            }
            group.addTask { try? await gracefulShutdown() }
            try await group.next()
            group.cancelAll()
        }
    }

    /// How long the group's cancellation may take after a second signal before the process ends regardless.
    static let hardStopAfter: Duration = .seconds(1)

    /// Ends the process with `code` once `delay` has passed, if it is still running then. On a Dispatch timer, not a
    /// task: the cooperative pool may be the thing that is stuck.
    static func exitIfStillRunning(after delay: Duration, code: Int32, logger: Logger) {
        DispatchQueue.global().asyncAfter(deadline: .now() + delay.timeInterval) {
            logger.warning("still stopping \(delay) after the second signal: exiting now (exit \(code))")
            fflush(nil)  // every stdio stream
            _exit(code)
        }
    }
}
