import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Synchronization

/// Where admin reads run (DESIGN §16): audit lists and CSV, spend, usage, key lists and key pages, the dashboard's
/// pages. Three bounds keep one tenant's reads from hurting anyone else:
///
/// - **Their own pool** (`KEYBRAKE_ADMIN_DB_MAX_CONNECTIONS`, default 4): the data plane's connections are never
///   theirs, so 64 slow audit filters wait for one of these few, not for the proxy's.
/// - **A statement timeout** (`KEYBRAKE_ADMIN_STATEMENT_TIMEOUT_MS`, default 5 s): each read runs in its own short
///   transaction that starts with `SET LOCAL statement_timeout`, which holds through PgBouncer in transaction mode
///   (a session setting or a start-up parameter would not). Postgres cancels a read past it (SQLSTATE 57014):
///   503 `query_timeout`, telling the user to narrow the window (`DatabaseErrors`).
/// - **Per-tenant concurrency** (`KEYBRAKE_ADMIN_READS_PER_TENANT`, default 2): a tenant's reads beyond it are
///   refused at once with 429 `too_many_reads` and `Retry-After: 1` — not queued, so a flood costs the server
///   nothing but the refusal, and a tenant can never hold the whole admin pool while another waits.
public final class AdminReads: Sendable {
    public struct Settings: Sendable, Equatable {
        public var maxConnections = 4
        public var statementTimeout: Duration = .seconds(5)
        public var perTenant = 2
        public init() {}

        var statementTimeoutMilliseconds: Int64 {
            max(1, statementTimeout.components.seconds * 1000 + statementTimeout.components.attoseconds / 1_000_000_000_000_000)
        }
    }

    public let client: DatabasePool
    public let settings: Settings
    private let counts = Mutex<[String: Int]>([:])

    public init(client: DatabasePool, settings: Settings = Settings()) {
        self.client = client
        self.settings = settings
    }

    /// The rows of one read, fetched whole inside one transaction under the statement timeout, counted against
    /// `tenantId`'s concurrent reads.
    public func rows(_ query: PostgresQuery, tenantId: String, logger: Logger) async throws -> [PostgresRow] {
        try acquire(tenantId)
        defer { release(tenantId) }
        let timeout = PostgresQuery(unsafeSQL: "SET LOCAL statement_timeout = \(settings.statementTimeoutMilliseconds)")
        do {
            return try await client.withTransaction(logger: logger) { connection in
                try await connection.query(timeout, logger: logger)
                var out: [PostgresRow] = []
                for try await row in try await connection.query(query, logger: logger) { out.append(row) }
                return out
            }
        } catch let error as PostgresTransactionError {
            if let closureError = error.closureError, error.rollbackError == nil { throw closureError }
            throw error
        }
    }

    /// How many reads `tenantId` has in flight now (tests).
    public func inFlight(tenantId: String) -> Int { counts.withLock { $0[tenantId] ?? 0 } }

    func acquire(_ tenantId: String) throws(KeybrakeError) {
        let admitted = counts.withLock { counts -> Bool in
            let n = counts[tenantId] ?? 0
            guard n < settings.perTenant else { return false }
            counts[tenantId] = n + 1
            return true
        }
        guard admitted else { throw Self.tooManyReads(settings.perTenant) }
    }

    func release(_ tenantId: String) {
        counts.withLock { counts in
            let n = (counts[tenantId] ?? 1) - 1
            counts[tenantId] = n > 0 ? n : nil
        }
    }

    static func tooManyReads(_ limit: Int) -> KeybrakeError {
        KeybrakeError(status: 429, code: "too_many_reads",
                      message: "This tenant already has \(limit) admin reads in progress (audit, spend, usage, keys, dashboard); retry when one has answered.",
                      retryAfterSeconds: 1)
    }
}

extension Array where Element == PostgresRow {
    /// The rows decoded as one tuple each, as `PostgresRowSequence.decode` does for a stream.
    public func decode<each Column: PostgresDecodable>(_: (repeat each Column).Type) throws -> [(repeat each Column)] {
        try map { try $0.decode((repeat each Column).self) }
    }
}
