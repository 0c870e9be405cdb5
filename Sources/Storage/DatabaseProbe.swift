import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO

/// Why Postgres could not be reached, as one line an operator can act on: the address (never the password) and
/// the cause — refused, name not resolved, no answer in time, authentication, TLS.
public struct DatabaseConnectError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Cause: String, Sendable, Equatable {
        case refused, nameNotResolved = "name_not_resolved", timedOut = "timed_out"
        case authenticationFailed = "authentication_failed", tls, databaseMissing = "database_missing", other
    }

    /// `host:port`.
    public let address: String
    public let cause: Cause
    /// What went wrong, in words (server messages included: they never carry the password).
    public let detail: String

    public init(address: String, cause: Cause, detail: String) {
        self.address = address
        self.cause = cause
        self.detail = detail
    }

    public var description: String { "cannot connect to the database at \(address): \(detail)" }

    /// Causes that waiting will not fix (a wrong password stays wrong): `migrate --wait` gives up on them at once.
    public var isPermanent: Bool { cause == .authenticationFailed || cause == .tls || cause == .databaseMissing }
}

/// One direct connection, made with a deadline, outside PostgresNIO's pool.
///
/// Why not the pool: with Postgres down, a pool lease waits while the pool retries with a growing backoff and, after
/// about a minute of failures, trips its circuit breaker (`connectionCreationCircuitBreakerTripped`); `migrate` used
/// to take 67 s to say only that. A single `PostgresConnection.connect` fails at once when the port refuses, within
/// `connectTimeout` otherwise (the deadline covers TCP, TLS and the start-up handshake), is cancellable, and its
/// error says what happened. Readiness probing uses the same call, so the pool is not touched (and not sent into
/// its backoff) until Postgres has answered.
public enum DatabaseProbe {
    public static func connect(_ url: DatabaseURL, logger: Logger) async throws -> PostgresConnection {
        let configuration: PostgresConnection.Configuration
        do { configuration = try url.connectionConfiguration() } catch {
            throw DatabaseConnectError(address: url.address, cause: .tls, detail: "TLS set-up failed: \(error)")
        }
        do {
            return try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw classify(error, url: url)
        }
    }

    /// Turns what PostgresNIO and NIO throw on connect into a cause an operator can act on.
    public static func classify(_ error: any Error, url: DatabaseURL) -> DatabaseConnectError {
        let address = url.address
        func make(_ cause: DatabaseConnectError.Cause, _ detail: String) -> DatabaseConnectError {
            DatabaseConnectError(address: address, cause: cause, detail: detail)
        }
        if let known = error as? DatabaseConnectError { return known }
        guard let psql = error as? PSQLError else { return classifyTransport(error, url: url) }
        switch psql.code {
        case .server:
            let sqlState = psql.serverInfo?[.sqlState] ?? ""
            let message = psql.serverInfo?[.message] ?? "error \(sqlState)"
            switch sqlState {
            case "28P01", "28000":
                return make(.authenticationFailed, "authentication failed for user \"\(url.username)\" (\(message))")
            case "3D000":
                return make(.databaseMissing, "database \"\(url.database)\" does not exist (create it, or fix DATABASE_URL)")
            case "57P03":
                return make(.other, "Postgres is starting up or shutting down (\(message))")
            default:
                return make(.other, "the server refused the session: \(message) (SQLSTATE \(sqlState))")
            }
        case .authMechanismRequiresPassword:
            return make(.authenticationFailed, "the server asks for a password and DATABASE_URL has none")
        case .unsupportedAuthMechanism, .saslError:
            return make(.authenticationFailed, "authentication failed for user \"\(url.username)\" (\(psql.code))")
        case .sslUnsupported:
            return make(.tls, "TLS was required (sslmode=\(url.requireTLS ? "require" : "disable")) but the server does not offer it")
        case .failedToAddSSLHandler, .receivedUnencryptedDataAfterSSLRequest:
            return make(.tls, "TLS handshake failed (\(psql.code))")
        case .connectionError:
            if let underlying = psql.underlying { return classifyTransport(underlying, url: url) }
            return make(.other, "connection failed")
        default:
            if let underlying = psql.underlying { return classifyTransport(underlying, url: url) }
            return make(.other, "\(psql.code)")
        }
    }

    static func classifyTransport(_ error: any Error, url: DatabaseURL) -> DatabaseConnectError {
        let address = url.address
        func make(_ cause: DatabaseConnectError.Cause, _ detail: String) -> DatabaseConnectError {
            DatabaseConnectError(address: address, cause: cause, detail: detail)
        }
        if let channel = error as? ChannelError, case .connectTimeout(let amount) = channel {
            return make(.timedOut, "no answer within \(amount.nanoseconds / 1_000_000) ms (connect timeout: KEYBRAKE_DATABASE_CONNECT_TIMEOUT_MS)")
        }
        if let connection = error as? NIOConnectionError {
            if connection.connectionErrors.isEmpty, connection.dnsAError != nil || connection.dnsAAAAError != nil {
                return make(.nameNotResolved, "host name \"\(url.host)\" could not be resolved")
            }
            if let first = connection.connectionErrors.first { return classifyTransport(first.error, url: url) }
            return make(.nameNotResolved, "host name \"\(url.host)\" has no address")
        }
        if error is SocketAddressError {
            return make(.nameNotResolved, "host name \"\(url.host)\" could not be resolved")
        }
        if let io = error as? IOError {
            switch io.errnoCode {
            case ECONNREFUSED: return make(.refused, "connection refused (is Postgres running and listening on \(address)?)")
            case ETIMEDOUT: return make(.timedOut, "connection timed out")
            case EHOSTUNREACH, ENETUNREACH: return make(.other, "no route to host (\(String(cString: strerror(io.errnoCode))))")
            default: return make(.other, String(cString: strerror(io.errnoCode)))
            }
        }
        if error is NIOSSLError || error is BoringSSLError {
            return make(.tls, "TLS handshake failed (\(error))")
        }
        return make(.other, "\(error)")
    }
}

extension DatabaseURL: CustomStringConvertible, CustomDebugStringConvertible {
    /// Without the password: swift-service-lifecycle logs each service's description at debug level, and a service
    /// that holds a `DatabaseURL` would otherwise print it whole.
    public var description: String { redacted }
    public var debugDescription: String { redacted }

    /// `host:port`, for messages (never the user's password).
    public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
