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
/// - **Per-tenant concurrency** (`KEYBRAKE_ADMIN_READS_PER_TENANT`, default 2), fairly shared (`TenantGate`, with
///   one seat per pooled connection): a tenant's reads beyond it wait in a queue of their own
///   (`KEYBRAKE_ADMIN_READS_QUEUE_PER_TENANT`, default 64, for at most `KEYBRAKE_ADMIN_READS_WAIT_MS`, default 1 s),
///   and a connection that comes free goes to the waiting tenant holding fewest. Past the queue or the wait: 429
///   `too_many_reads` with `Retry-After: 1`. Waiting costs the server nothing, and a flood that loops on 64
///   connections is slowed to the rate its two reads are answered at, instead of being refused as fast as it asks.
public final class AdminReads: Sendable {
    public struct Settings: Sendable, Equatable {
        public var maxConnections = 4
        public var statementTimeout: Duration = .seconds(5)
        public var perTenant = 2
        public var queuePerTenant = 64
        public var maxWait: Duration = .seconds(1)
        public init() {}

        var statementTimeoutMilliseconds: Int64 {
            max(1, statementTimeout.milliseconds)
        }

        var gate: TenantGate.Settings {
            TenantGate.Settings(seats: maxConnections, seatsPerTenant: perTenant, queuePerTenant: queuePerTenant, maxWait: maxWait)
        }
    }

    public let client: DatabasePool
    /// A standby (`KEYBRAKE_READ_DATABASE_URL`), used only by the view `preferringStandby()` returns.
    public let standby: DatabasePool?
    let useStandby: Bool
    public let settings: Settings
    let gate: TenantGate

    public convenience init(client: DatabasePool, standby: DatabasePool? = nil, settings: Settings = Settings()) {
        self.init(client: client, standby: standby, useStandby: false, settings: settings, gate: TenantGate(settings: settings.gate))
    }

    init(client: DatabasePool, standby: DatabasePool?, useStandby: Bool, settings: Settings, gate: TenantGate) {
        self.client = client
        self.standby = standby
        self.useStandby = useStandby
        self.settings = settings
        self.gate = gate
    }

    /// The same reads (same pool, same per-tenant limit), from the standby when there is one: for the audit, spend
    /// and usage reads and the dashboard's, never for anything that decides a request. Each read says how stale it
    /// may be (`ReadLag`); while the standby fails, reads go to the primary.
    public func preferringStandby() -> AdminReads {
        AdminReads(client: client, standby: standby, useStandby: standby != nil, settings: settings, gate: gate)
    }

    /// Whether these reads go to a standby first.
    public var prefersStandby: Bool { useStandby }

    /// The same reads, always from the primary: to read back what the request itself has just written.
    public func onPrimary() -> AdminReads {
        AdminReads(client: client, standby: standby, useStandby: false, settings: settings, gate: gate)
    }

    /// The rows of one read, fetched whole inside one transaction under the statement timeout, counted against
    /// `tenantId`'s concurrent reads.
    public func rows(_ query: PostgresQuery, tenantId: String, logger: Logger) async throws -> [PostgresRow] {
        try await acquire(tenantId)
        defer { gate.release(tenantId) }
        let timeout = PostgresQuery(unsafeSQL: "SET LOCAL statement_timeout = \(settings.statementTimeoutMilliseconds)")
        if useStandby, let standby, !standby.isSuspect {
            // Bounded: a standby that does not answer (down behind HAProxy, a stranded query) is a read from the
            // primary a little later, not a failed page.
            let limit = settings.statementTimeout + .seconds(1)
            do {
                let (rows, lag) = try await Deadline.run(limit) { try await Self.read(standby, query, timeout, lag: true, logger: logger) }
                // nil: the read port reached a primary (a standby just promoted, before HAProxy's check moved on).
                ReadLag.current?.record(lag.map { .standby(seconds: $0) } ?? .primary)
                return rows
            } catch where DatabaseErrors.map(error, logger: logger).code == ErrorCode.unavailable.rawValue {
                logger.warning("standby read failed; reading from the primary")
            }
        }
        let (rows, _) = try await Self.read(client, query, timeout, lag: false, logger: logger)
        ReadLag.current?.record(.primary)
        return rows
    }

    /// How far behind the primary a standby's answer may be: 0 when it has replayed all it received, else the age of
    /// the last transaction it replayed; NULL on a primary.
    static let lagQuery: PostgresQuery = """
        SELECT (CASE WHEN NOT pg_is_in_recovery() THEN NULL
                     WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                     ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END)::float8
        """

    static func read(_ pool: DatabasePool, _ query: PostgresQuery, _ timeout: PostgresQuery, lag: Bool,
                     logger: Logger) async throws -> ([PostgresRow], Double?) {
        do {
            return try await pool.withTransaction(logger: logger) { connection in
                try await connection.query(timeout, logger: logger)
                var seconds: Double?
                if lag {
                    for try await value in try await connection.query(lagQuery, logger: logger).decode(Double?.self) { seconds = value }
                }
                var out: [PostgresRow] = []
                for try await row in try await connection.query(query, logger: logger) { out.append(row) }
                return (out, seconds)
            }
        } catch let error as PostgresTransactionError {
            if let closureError = error.closureError, error.rollbackError == nil { throw closureError }
            throw error
        }
    }

    /// How many reads `tenantId` has in flight now, and how many wait (tests).
    public func inFlight(tenantId: String) -> Int { gate.load(tenantId).held }
    public func waiting(tenantId: String) -> Int { gate.load(tenantId).queued }

    func acquire(_ tenantId: String) async throws(KeybrakeError) {
        if gate.tryAdmit(tenantId) { return }
        guard await gate.wait(tenantId) else { throw Self.tooManyReads(settings.perTenant) }
    }

    static func tooManyReads(_ limit: Int) -> KeybrakeError {
        KeybrakeError(status: 429, code: .tooManyReads,
                      message: "This tenant already has \(limit) admin reads in progress (audit, spend, usage, keys, dashboard) and more waiting than can be served now; retry when one has answered.",
                      retryAfterSeconds: 1)
    }
}

extension Array where Element == PostgresRow {
    /// The rows decoded as one tuple each, as `PostgresRowSequence.decode` does for a stream.
    public func decode<each Column: PostgresDecodable>(_: (repeat each Column).Type) throws -> [(repeat each Column)] {
        try map { try $0.decode((repeat each Column).self) }
    }
}

/// What the admin reads of one request were served from, for its `Keybrake-Read-Lag` header (README "High
/// availability"): bound per admin request by the server's middleware; reads outside one record nothing.
public final class ReadLag: Sendable {
    public enum Source: Sendable, Equatable {
        case primary
        case standby(seconds: Double)
    }

    @TaskLocal public static var current: ReadLag?
    private let worst = Mutex<Source?>(nil)

    public init() {}

    /// The stalest answer among the request's reads.
    public var source: Source? { worst.withLock { $0 } }

    func record(_ source: Source) {
        worst.withLock { worst in
            switch (worst, source) {
            case (nil, _), (.primary?, .standby): worst = source
            case (.standby(let a)?, .standby(let b)) where b > a: worst = source
            default: break
            }
        }
    }
}
