import Foundation
import KeybrakeCore
import Logging
import NIOSSL
import PostgresNIO

/// Connection settings parsed from `DATABASE_URL` (`postgres://user:pass@host:port/db?sslmode=disable`).
public struct DatabaseURL: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var requireTLS: Bool
    /// How long one connection attempt may take (TCP, TLS and Postgres's start-up handshake together) before it
    /// counts as failed: the pool's, the key-change listener's and the start-up probe's
    /// (`KEYBRAKE_DATABASE_CONNECT_TIMEOUT_MS`).
    public var connectTimeout: Duration = .seconds(5)

    public enum ParseError: Error, CustomStringConvertible {
        case invalid(String)
        public var description: String {
            if case .invalid(let why) = self { return "DATABASE_URL is invalid: \(why) (expected postgres://user:password@host:port/database)" }
            return ""
        }
    }

    public init(_ text: String) throws {
        guard let components = URLComponents(string: text), let scheme = components.scheme,
              scheme == "postgres" || scheme == "postgresql"
        else { throw ParseError.invalid("scheme must be postgres://") }
        guard let host = components.host, !host.isEmpty else { throw ParseError.invalid("missing host") }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? "postgres"
        self.password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        let db = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        guard !db.isEmpty else { throw ParseError.invalid("missing database name") }
        self.database = db
        let sslmode = components.queryItems?.first(where: { $0.name == "sslmode" })?.value
        self.requireTLS = sslmode == "require" || sslmode == "verify-full"
    }

    /// The URL without its password, safe to log.
    public var redacted: String { "postgres://\(username)@\(host):\(port)/\(database)" }

    /// `minConnections` are opened eagerly and kept: PostgresNIO's pool runs no timers for them. Every connection
    /// above the minimum, and every keep-alive, costs a timer task per query (scheduled when the connection is
    /// released, cancelled when it is leased again): measured ~17 context switches and ~0.3 ms of CPU per query.
    public func clientConfiguration(maxConnections: Int = 32, minConnections: Int = 0) -> PostgresClient.Configuration {
        var config = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database,
            tls: requireTLS ? .require(.makeClientConfiguration()) : .disable
        )
        config.options.maximumConnections = maxConnections
        config.options.minimumConnections = min(minConnections, maxConnections)
        // A dead connection shows itself on its next query (503, fail closed) and is replaced by the pool.
        config.options.keepAliveBehavior = nil
        config.options.connectTimeout = connectTimeout
        return config
    }
}

extension DatabaseURL {
    /// One connection of its own, outside the pool (the key-change listener holds it for the process's life).
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var config = PostgresConnection.Configuration(
            host: host, port: port, username: username, password: password, database: database,
            tls: requireTLS ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable
        )
        config.options.connectTimeout = Self.timeAmount(connectTimeout)
        return config
    }

    static func timeAmount(_ d: Duration) -> TimeAmount {
        .nanoseconds(d.nanoseconds)
    }
}

extension PostgresClient {
    /// Runs `body` in one short transaction; any error rolls it back. An error thrown by `body`
    /// reaches the caller as itself (not wrapped in PostgresTransactionError) once rollback is done.
    public func transaction<T: Sendable>(
        logger: Logger, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        do {
            return try await withTransaction(logger: logger) { connection in try await body(connection) }
        } catch let error as PostgresTransactionError {
            if let closureError = error.closureError, error.rollbackError == nil { throw closureError }
            throw error
        }
    }
}

/// Maps database failures to the error clients see: connection problems are 503 `unavailable`
/// (fail closed), anything else is an internal error whose detail goes only to the log.
public enum DatabaseErrors {
    public static func map(_ error: any Error, logger: Logger) -> KeybrakeError {
        if let kb = error as? KeybrakeError { return kb }
        if let tx = error as? PostgresTransactionError,
           let inner = tx.closureError ?? tx.beginError ?? tx.commitError ?? tx.rollbackError {
            return map(inner, logger: logger)
        }
        if let psql = error as? PSQLError {
            let sqlState = psql.serverInfo?[.sqlState] ?? "-"
            // Class 08 = connection exception, 57P0x = server shutting down or starting up, 25006 = read-only
            // transaction: a connection to a node that is no longer the primary (just after a failover, before
            // HAProxy's check moves the write port). Nothing was written; fail closed.
            let serverGone = sqlState.hasPrefix("08") || sqlState.hasPrefix("57P") || sqlState == "25006"
            switch psql.code {
            // unexpectedBackendMessage: what PgBouncer's side of a connection says when its server went away
            // mid-statement (seen in the failover test); nothing was committed.
            case .serverClosedConnection, .clientClosedConnection, .connectionError, .poolClosed, .queryCancelled, .uncleanShutdown,
                 .unexpectedBackendMessage:
                logger.warning("database unavailable", metadata: ["error": "\(String(reflecting: psql.code))"])
                return .unavailable
            case _ where serverGone:
                logger.warning("database unavailable", metadata: ["sqlstate": "\(sqlState)"])
                return .unavailable
            case _ where sqlState == "57014":
                // query_canceled: an admin read ran past its statement timeout (`AdminReads`).
                logger.info("read stopped by the statement timeout", metadata: ["sqlstate": "\(sqlState)"])
                return .queryTimeout
            case _ where sqlState == "40P01" || sqlState == "40001":
                // Deadlock or serialization failure: nothing was committed; the client may retry.
                logger.warning("database conflict", metadata: ["sqlstate": "\(sqlState)"])
                return KeybrakeError(status: 503, code: .unavailable, message: "A conflicting request was being recorded at the same moment; nothing was changed. Retry.")
            case _ where sqlState.hasPrefix("22"):
                // Data exception (a value Postgres cannot store or compare): the request's fault, not ours.
                logger.info("request value rejected by the database", metadata: ["sqlstate": "\(sqlState)"])
                return .invalidRequest("A value in the request is not valid (for example it contains a NUL character or is out of range).")
            default:
                let message = psql.serverInfo?[.message] ?? "\(psql.code)"
                logger.error("database error", metadata: ["sqlstate": "\(sqlState)", "detail": "\(message)"])
                return .internalError
            }
        }
        if error is CancellationError { return .unavailable }
        // PostgresNIO's pool error (no connection could be made for a while): the database is unreachable.
        if String(describing: type(of: error)) == "ConnectionPoolError" {
            logger.warning("database unavailable", metadata: ["error": "connection pool"])
            return .unavailable
        }
        logger.error("unexpected error", metadata: ["error": "\(String(describing: type(of: error)))"])
        return .internalError
    }
}

/// Runs `body` with a started client and shuts the client down afterwards (for CLI commands and tests).
public func withPostgresClient<T: Sendable>(
    _ url: DatabaseURL, logger: Logger, _ body: @Sendable (PostgresClient) async throws -> T
) async throws -> T {
    let client = PostgresClient(configuration: url.clientConfiguration(maxConnections: 4), backgroundLogger: logger)
    return try await withThrowingTaskGroup(of: T?.self) { group in
        // `body` must not lease a connection before `run()` has begun: PostgresNIO warns "PostgresClient.run()
        // hasn't been called yet" (seen on most `keybrake migrate` runs, since the child task had not started yet).
        // The child says when it starts and goes straight into `run()`, whose first act is to mark the client
        // running; PostgresNIO offers nothing to await beyond that.
        let (started, signal) = AsyncStream<Void>.makeStream()
        group.addTask {
            signal.finish()
            await client.run()
            return nil
        }
        defer { group.cancelAll() }
        for await _ in started {}
        return try await body(client)
    }
}
