import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The Postgres pool every repository uses: a `PostgresClient` that is replaced whole when it is stuck.
///
/// PostgresNIO's pool backs off between failed connection attempts by 100 ms × 1.25ⁿ, up to a minute, and nothing
/// outside it can reset that: after an outage of 20 s it waits seconds after Postgres is back, after a minute of
/// outage up to a minute (README "High availability"). A failover behind HAProxy is such an outage (the leader key's
/// TTL, ~10 s). So a probe checks the pool; when the pool fails while a direct connection to the same address works,
/// the pool is replaced by a fresh client, whose first query connects at once. Requests read the current client with
/// one atomic load (no lock, no task); the old client is closed a little later, once the requests holding it are done.
///
/// `preparedStatements: false` runs every `execute` as an unnamed statement (`Parse` with no name, as `query` does):
/// PgBouncer 1.18 in transaction mode cannot keep a named statement, which lives in one server session.
public final class DatabasePool: Sendable, Service {
    final class Generation: Sendable {
        let client: PostgresClient
        let number: Int
        init(client: PostgresClient, number: Int) {
            self.client = client
            self.number = number
        }
    }

    public struct Probe: Sendable {
        /// Between two checks of a healthy pool; a failed check is followed by quicker ones.
        public var interval: Duration = .milliseconds(500)
        public var suspectInterval: Duration = .milliseconds(200)
        /// How long the pool may take to answer `SELECT 1` before it is suspect (generous: a busy pool is not stuck).
        public var poolTimeout: Duration = .seconds(2)
        /// Once Postgres answers a direct connection, how long the suspect pool gets to answer before it is replaced.
        public var recheckTimeout: Duration = .milliseconds(300)
        /// How long a replaced client stays open for the requests that still hold it.
        public var retireAfter: Duration = .seconds(10)
        public init() {}
    }

    /// Only `retire` releases a generation, after `retireAfter`: a request's atomic load never sees a freed one.
    private let current: Atomic<Unmanaged<Generation>>
    private let failing = Atomic<Bool>(false)
    private let makeClient: @Sendable () -> PostgresClient
    let url: DatabaseURL?
    let probe: Probe
    let logger: Logger
    public let preparedStatements: Bool

    /// A pool that replaces its client when the probe finds it stuck (`run()` starts the client and the probe).
    public init(url: DatabaseURL, maxConnections: Int, minConnections: Int = 0, preparedStatements: Bool = true,
                probe: Probe = Probe(), logger: Logger) {
        let configuration = url.clientConfiguration(maxConnections: maxConnections, minConnections: minConnections)
        self.makeClient = { PostgresClient(configuration: configuration, backgroundLogger: logger) }
        self.current = Atomic(Unmanaged.passRetained(Generation(client: makeClient(), number: 1)))
        self.url = url
        self.probe = probe
        self.logger = logger
        self.preparedStatements = preparedStatements
    }

    /// A fixed client that is never replaced, run by its owner (tests, one-shot commands).
    public init(fixed client: PostgresClient, preparedStatements: Bool = true) {
        self.makeClient = { client }
        self.current = Atomic(Unmanaged.passRetained(Generation(client: client, number: 1)))
        self.url = nil
        self.probe = Probe()
        self.logger = Logger(label: "keybrake.pool")
        self.preparedStatements = preparedStatements
    }

    /// The client to use now.
    @inline(__always)
    public var client: PostgresClient { current.load(ordering: .acquiring).takeUnretainedValue().client }

    /// The last probe found the pool failing (admin reads then skip a standby and read from the primary).
    public var isSuspect: Bool { failing.load(ordering: .relaxed) }

    /// How many times the client was replaced (tests, metrics).
    public var replacements: Int { current.load(ordering: .acquiring).takeUnretainedValue().number - 1 }

    // MARK: - Running

    /// Runs the current client and the probe until cancelled or shut down; a replaced client is closed after
    /// `retireAfter`.
    public func run() async {
        guard let url else { return }
        let first = client
        var runner = Task { await first.run() }
        var suspect = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let pause = suspect ? probe.suspectInterval : probe.interval
            guard (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: pause) })) != nil else { break }
            if !suspect {
                suspect = !(await answers(client, within: probe.poolTimeout))
                self.failing.store(suspect, ordering: .relaxed)
                continue
            }
            // The pool failed: is it the pool or Postgres? Only a pool that fails while Postgres answers is replaced.
            guard await Self.answersDirectly(url, within: probe.poolTimeout, logger: logger) else { continue }
            if await answers(client, within: probe.recheckTimeout) {
                suspect = false
                self.failing.store(false, ordering: .relaxed)
                continue
            }
            runner = replace(retiring: runner)
            suspect = false
            self.failing.store(false, ordering: .relaxed)
        }
        runner.cancel()
        await runner.value
    }

    /// Publishes a fresh client and schedules the old one's closing (cancelling its `run()` closes it); returns the
    /// new client's runner.
    func replace(retiring oldRunner: Task<Void, Never>) -> Task<Void, Never> {
        let fresh = makeClient()
        let runner = Task { await fresh.run() }
        let old = current.load(ordering: .acquiring)
        let next = Unmanaged.passRetained(Generation(client: fresh, number: old.takeUnretainedValue().number + 1))
        current.store(next, ordering: .releasing)
        logger.warning("database pool replaced: it could not reach Postgres while a direct connection could",
                       metadata: ["generation": "\(old.takeUnretainedValue().number + 1)"])
        let retireAfter = probe.retireAfter
        Task {
            try? await Task.sleep(for: retireAfter)
            oldRunner.cancel()
            await oldRunner.value
            old.release()
        }
        return runner
    }

    func answers(_ client: PostgresClient, within limit: Duration) async -> Bool {
        let logger = self.logger
        return (try? await Deadline.run(limit, { try await client.query("SELECT 1", logger: logger); return true })) ?? false
    }

    static func answersDirectly(_ url: DatabaseURL, within limit: Duration, logger: Logger) async -> Bool {
        let attempt: @Sendable () async throws -> Bool = {
            let connection = try await DatabaseProbe.connect(url, logger: logger)
            let answered: Bool
            do {
                try await connection.query("SELECT 1", logger: logger)
                answered = true
            } catch { answered = false }
            try? await connection.close()
            return answered
        }
        return (try? await Deadline.run(limit, attempt)) ?? false
    }

    // MARK: - PostgresClient's calls, on the current client

    @discardableResult
    public func query(_ query: PostgresQuery, logger: Logger? = nil, file: String = #fileID, line: Int = #line) async throws -> PostgresRowSequence {
        try await client.query(query, logger: logger, file: file, line: line)
    }

    /// A prepared statement; with `preparedStatements` off, the same SQL and binds as an unnamed statement.
    public func execute<Statement: PostgresPreparedStatement, Row>(
        _ statement: Statement, logger: Logger? = nil, file: String = #fileID, line: Int = #line
    ) async throws -> AsyncThrowingMapSequence<PostgresRowSequence, Row> where Row == Statement.Row {
        if preparedStatements { return try await client.execute(statement, logger: logger, file: file, line: line) }
        let rows = try await client.query(PostgresQuery(unsafeSQL: Statement.sql, binds: try statement.makeBindings()),
                                          logger: logger, file: file, line: line)
        return rows.map { try statement.decodeRow($0) }
    }

    public func withConnection<Result: Sendable>(_ closure: (PostgresConnection) async throws -> Result) async throws -> Result {
        try await client.withConnection(closure)
    }

    public func withTransaction<Result: Sendable>(
        logger: Logger, file: String = #file, line: Int = #line, _ closure: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await client.withTransaction(logger: logger, file: file, line: line) { connection in try await closure(connection) }
    }

    /// `PostgresClient.transaction` (Database.swift) on the current client.
    public func transaction<T: Sendable>(logger: Logger, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await client.transaction(logger: logger, body)
    }
}
