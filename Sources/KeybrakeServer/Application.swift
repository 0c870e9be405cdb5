import Foundation
import HTTPLayer
import Hummingbird
import HummingbirdCore
import ServiceLifecycle
import UnixSignals
import KeybrakeCore
import Audit
import Dashboard
import Keys
import Logging
import PostgresNIO
import Prometheus
import Proxy
import Storage
import Tenants
import TokenAuth
import Vault
import Webhooks

/// Everything the routes share, built once per process.
public struct AppDependencies: Sendable {
    public let configuration: AppConfiguration
    public let postgres: DatabasePool
    /// Admin and dashboard reads: their own pool, statement timeout and per-tenant limit (DESIGN §16). Never the
    /// data plane's `postgres`, except where a caller builds dependencies without one (tests of other things).
    public let adminReads: AdminReads
    public let verifier: TokenVerifier
    public let clock: any KeybrakeCore.Clock
    public let metricsRegistry: PrometheusCollectorRegistry
    public let forwarder: Forwarder
    /// Closed until the database is ready (start-up) and again on SIGTERM: `/ready` and the proxy answer 503.
    public let drain: Drain
    /// Key rows in memory under this replica's lease (nil when `keysFromMemory` is off).
    public let keyDirectory: KeyDirectory?

    /// Attempts with a key's id whose token was not proven, summed up per key (DESIGN §4).
    public let unverifiedAttempts: UnverifiedAttempts

    public init(configuration: AppConfiguration, postgres: DatabasePool, adminPostgres: DatabasePool? = nil, standby: DatabasePool? = nil,
                verifier: TokenVerifier? = nil,
                clock: any KeybrakeCore.Clock = SystemClock(), metricsRegistry: PrometheusCollectorRegistry = .init(),
                drain: Drain = Drain(started: true)) {
        self.configuration = configuration
        self.drain = drain
        self.postgres = postgres
        self.adminReads = AdminReads(client: adminPostgres ?? postgres, standby: standby, settings: configuration.adminReads)
        self.verifier = verifier ?? TokenVerifier(configuration: configuration.tokens)
        self.unverifiedAttempts = UnverifiedAttempts(client: postgres)
        self.clock = clock
        self.metricsRegistry = metricsRegistry
        self.keyDirectory = configuration.keysFromMemory ? KeyDirectory() : nil
        self.forwarder = Forwarder(timeout: configuration.proxy.upstreamTimeout, maxResponseBody: configuration.proxy.maxResponseBody,
                                   settings: configuration.proxy.upstream)
    }
}

/// Wires every module's routes into one router (DESIGN §2: each feature module owns its routes).
public func buildRouter(_ deps: AppDependencies) -> Router<KeybrakeRequestContext> {
    let config = deps.configuration
    let tenantRepository = PostgresTenantRepository(client: deps.postgres)
    var tenantsConfiguration = TenantsConfiguration(freeMonthlyRequests: config.freeMonthlyRequests, operatorToken: config.operatorToken,
                                                    signupsPerMinutePerClient: config.signupsPerMinutePerClient)
    tenantsConfiguration.adminTokensPerMinutePerTenant = config.adminTokensPerMinutePerTenant
    tenantsConfiguration.maxAdminTokensPerTenant = config.maxAdminTokensPerTenant
    tenantsConfiguration.maxSessionsPerTenant = config.maxSessionsPerTenant
    tenantsConfiguration.trustedProxies = config.trustedProxies
    let tenants = TenantController(repository: tenantRepository, verifier: deps.verifier, configuration: tenantsConfiguration, clock: deps.clock)
    let credentialStore = CredentialStore(client: deps.postgres, sealer: CredentialSealer(ring: config.masterKeys))
    let vault = VaultController(store: credentialStore)
    let vaultKeys = VaultKeyAuthenticator(client: deps.postgres, verifier: deps.verifier, directory: deps.keyDirectory)
    let adminTokens = AdminTokenAuthenticator(repository: tenantRepository, verifier: deps.verifier, trustedProxies: config.trustedProxies)
    let keyCreations = TenantActionLimiter(perMinutePerTenant: config.keyCreationsPerMinutePerTenant)
    let keyChangeLimit = TenantActionLimiter(perMinutePerTenant: config.keyChangesPerMinutePerTenant, action: "changing vault keys")
    let unverified = deps.unverifiedAttempts
    let keyChanges = KeyChangeAcknowledgements(client: deps.postgres, settings: config.keyLease)
    let proxy = ProxyController(pipeline: ProxyPipeline(
        config: config.proxy,
        authenticator: vaultKeys,
        credentials: credentialStore, ledger: SpendLedger(client: deps.postgres),
        idempotency: IdempotencyStore(client: deps.postgres), forwarder: deps.forwarder, clock: deps.clock,
        tenants: tenantRepository, drain: deps.drain, trustedProxies: config.trustedProxies, unverifiedAttempts: unverified,
        gate: config.admission.seats > 0 ? TenantGate(settings: config.admission) : nil
    ))
    // Audit, spend and usage reads may come from the standby (`KEYBRAKE_READ_DATABASE_URL`); key lists and
    // everything that decides a request, never.
    let spendRepository = SpendRepository(reads: deps.adminReads.preferringStandby())
    let auditRepository = AuditRepository(client: deps.postgres, reads: deps.adminReads.preferringStandby())
    let keys = KeysController(repository: PostgresKeyRepository(client: deps.postgres, reads: deps.adminReads, maxRootKeys: config.maxKeysPerTenant), verifier: deps.verifier, clock: deps.clock,
                              spendReader: LedgerKeySpendReader(spend: spendRepository),
                              creations: keyCreations, changes: keyChangeLimit, acknowledgements: keyChanges)
    let childKeys = ChildKeysController(keys: keys, authenticator: vaultKeys, limits: config.childKeys,
                                        mintsPerMinutePerTenant: config.childKeyMintsPerMinutePerTenant, trustedProxies: config.trustedProxies) { key in
        unverified.record(UnverifiedAttempts.Attempt(tenantId: key.tenantId, keyId: key.id, keyLabel: key.policy.label,
                                                     vendor: key.policy.vendor.rawValue, method: "POST", path: "/v1/child-keys"))
    }
    let quotas = tenantsConfiguration
    let audit = AuditController(audit: auditRepository, spend: spendRepository, clock: deps.clock) { tenantId, context in
        guard let tenant = try await tenantRepository.tenant(id: tenantId, logger: context.logger) else { throw KeybrakeError.adminTokenInvalid }
        return (tenant.plan.rawValue, quotas.monthlyQuota(for: tenant.plan))
    }

    let webhookRepository = WebhookRepository(client: deps.postgres, sealer: CredentialSealer(ring: config.masterKeys))
    let webhookReads = WebhookReads(reads: deps.adminReads)
    let webhookURLs = WebhookURLPolicy(allowPrivate: config.webhooks.allowPrivate)

    let router = Router(context: KeybrakeRequestContext.self)
    router.add(middleware: RequestEnvelopeMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: proxy.hostRouting)
    router.add(middleware: StartupGateMiddleware(drain: deps.drain))

    HealthController(postgres: deps.postgres, drain: deps.drain).addRoutes(to: router)
    // Every tenant's traffic: on the public port only behind the token (DESIGN §9); otherwise 404 here.
    if config.metrics.token != nil {
        MetricsController(registry: deps.metricsRegistry, token: config.metrics.token).addRoutes(to: router)
    }
    tenants.addPublicRoutes(to: router)
    proxy.addRoutes(to: router)
    childKeys.addRoutes(to: router)
    DashboardController(
        postgres: deps.postgres, authenticator: adminTokens,
        tenants: tenantRepository, tenantsConfiguration: tenantsConfiguration, keys: PostgresKeyRepository(client: deps.postgres, reads: deps.adminReads, maxRootKeys: config.maxKeysPerTenant),
        verifier: deps.verifier, credentials: credentialStore, audit: auditRepository, spend: spendRepository,
        keySpend: LedgerKeySpendReader(spend: spendRepository), clock: deps.clock, keyChanges: keyChanges, keyCreations: keyCreations,
        keyChangeLimit: keyChangeLimit, webhooks: DashboardWebhooks(repository: webhookRepository, reads: webhookReads, urls: webhookURLs)
    ).addRoutes(to: router)

    let admin = router.group("/v1").add(middleware: AdminAuthMiddleware(authenticator: adminTokens)).add(middleware: ReadLagMiddleware())
    tenants.addAdminRoutes(to: admin)
    vault.addAdminRoutes(to: admin)
    keys.addAdminRoutes(to: admin)
    audit.addAdminRoutes(to: admin)
    WebhookController(repository: webhookRepository, reads: webhookReads, urls: webhookURLs, clock: deps.clock).addAdminRoutes(to: admin)
    return router
}

/// The whole server: router, Postgres client as a service. With a `startup` plan (`serve`) the listener comes up
/// first and the database after it (`DatabaseStartupService`, README "Operations"); without one (tests) the
/// database is taken as ready, migrated by the caller.
public func buildApplication(
    _ config: AppConfiguration, logger: Logger, startup: StartupPlan? = nil, drain: Drain? = nil, maintainAuditPartitions: Bool = false,
    metricsRegistry: PrometheusCollectorRegistry = .init(), clock: any KeybrakeCore.Clock = SystemClock()
) throws -> some ApplicationProtocol {
    // Replaced whole when it is stuck in PostgresNIO's connection backoff after an outage or a failover (README
    // "High availability").
    let postgres = DatabasePool(url: config.databaseURL, maxConnections: config.databaseMaxConnections,
                                minConnections: config.databaseMinConnections, preparedStatements: config.databasePreparedStatements,
                                logger: logger)
    let drain = drain ?? Drain(started: startup == nil)
    // Admin reads get a pool of their own (DESIGN §16): a flood of slow audit filters waits for these few
    // connections, never for the data plane's. Started and stopped with the other one (below).
    let adminPostgres = DatabasePool(url: config.databaseURL, maxConnections: config.adminReads.maxConnections,
                                     preparedStatements: config.databasePreparedStatements, logger: logger)
    let standby = config.readDatabaseURL.map {
        DatabasePool(url: $0, maxConnections: config.adminReads.maxConnections, preparedStatements: config.databasePreparedStatements, logger: logger)
    }
    let deps = AppDependencies(configuration: config, postgres: postgres, adminPostgres: adminPostgres, standby: standby, clock: clock,
                               metricsRegistry: metricsRegistry, drain: drain)
    // Connection hygiene: a client that goes quiet is dropped, the number of connections and the size of headers
    // are bounded (DESIGN §7; README "Configuration").
    let connections = config.connections
    let http1 = HTTP1Channel.Configuration(
        idleTimeout: .milliseconds(Int64(connections.idleTimeout.components.seconds) * 1000 + connections.idleTimeout.components.attoseconds / 1_000_000_000_000_000),
        httpDecoderConfiguration: .init(maxHeaderFieldSize: connections.maxHeaderBytes, maxHeaderListSize: connections.maxHeaderBytes,
                                        maxHeaderFieldCount: connections.maxHeaderFields))
    var app = Application(
        router: buildRouter(deps),
        server: .http1(configuration: http1),
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: "keybrake",
                             availableConnectionsDelegate: MaximumAvailableConnections(connections.maxConnections)),
        logger: logger
    )
    app.addServices(postgres, adminPostgres, ForwarderService(forwarder: deps.forwarder), DrainService(drain: drain))
    if let standby { app.addServices(standby) }
    if let startup {
        app.addServices(DatabaseStartupService(url: config.databaseURL, plan: startup, drain: drain, logger: logger))
    }
    app.addServices(LeaseSweepService(ledger: SpendLedger(client: postgres), interval: config.proxy.leaseSweepInterval, drain: drain, logger: logger))
    app.addServices(UnverifiedAttemptsService(attempts: deps.unverifiedAttempts, interval: config.unverifiedSummaryInterval, logger: logger))
    if let metrics = buildMetricsListener(config.metrics, registry: metricsRegistry, logger: logger) {
        app.addServices(metrics)
    }
    if let directory = deps.keyDirectory {
        app.addServices(KeyChangeFeedService(feed: KeyChangeFeed(
            url: config.listenDatabaseURL ?? config.databaseURL, pool: postgres, directory: directory, settings: config.keyLease, logger: logger),
                                             drain: drain))
    }
    if config.webhooks.delivers {
        let webhookTransport = HTTPWebhookTransport(urls: WebhookURLPolicy(allowPrivate: config.webhooks.allowPrivate))
        app.addServices(WebhookDeliveryService(
            dispatcher: WebhookDispatcher(client: postgres, repository: WebhookRepository(client: postgres, sealer: CredentialSealer(ring: config.masterKeys)),
                                          transport: webhookTransport, settings: config.webhooks, clock: clock),
            transport: webhookTransport, interval: config.webhooks.pollInterval, drain: drain, logger: logger))
    }
    if maintainAuditPartitions {
        app.addServices(AuditPartitionService(repository: AuditRepository(client: postgres), drain: drain, logger: logger))
    }
    return app
}

/// Liveness and readiness (database reachable); no auth. Metrics: `MetricsController`.
struct HealthController: Sendable {
    let postgres: DatabasePool
    let drain: Drain

    func addRoutes(to router: some RouterMethods<KeybrakeRequestContext>) {
        router.get("/health") { _, _ in try JSONResponse.make(.ok, ["status": "ok"]) }
        router.get("/ready") { _, context in
            if let (reason, message) = drain.notReady { return try Self.notReady(reason, message) }
            guard await databaseReachable(logger: context.logger) else {
                return try Self.notReady(.databaseUnreachable, "The database did not answer SELECT 1 within 2 s.")
            }
            return try JSONResponse.make(.ok, ["status": "ready"])
        }
    }

    /// 503 with the reason a load balancer or an operator reads (README "Operations").
    static func notReady(_ reason: Drain.Reason, _ message: String) throws -> Response {
        var response = try JSONResponse.make(.serviceUnavailable, ["status": "not_ready", "reason": reason.rawValue, "message": message])
        response.headers[.keybrakeErrorCode] = reason == .draining ? "shutting_down" : "unavailable"
        response.headers[.retryAfter] = "1"
        return response
    }

    /// `SELECT 1` within two seconds.
    func databaseReachable(logger: Logger) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await postgres.query("SELECT 1", logger: logger)
                    return true
                } catch { return false }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(2))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}

/// Marks the replica as draining when graceful shutdown reaches it without a signal (in-process shutdowns). Under
/// `serve`, `StopSignalService` marks it the moment SIGTERM arrives. Graceful shutdown reaches the services in
/// reverse order, the HTTP server first (it stops accepting connections and lets the requests in flight finish;
/// Postgres and the forwarder stop after it, so those requests still settle and write their audit rows).
struct DrainService: Service {
    let drain: Drain

    func run() async throws {
        // A service that returns early stops the whole group: wait for graceful shutdown to reach this one.
        try? await gracefulShutdown()
        drain.start()
    }
}

/// Writes the unverified attempts of the last interval as one audit row per key (DESIGN §4), and once more at
/// shutdown so a replica that stops loses none it could write — under a deadline, so a database that is down
/// cannot hold the shutdown (issue 27).
struct UnverifiedAttemptsService: Service {
    let attempts: UnverifiedAttempts
    let interval: Duration
    let logger: Logger
    static let finalFlushDeadline: Duration = .seconds(2)

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let wait = interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            await flush()
        }
    }

    func flush() async {
        let attempts = self.attempts, logger = self.logger
        do { try await Deadline.run(Self.finalFlushDeadline, { try await attempts.flush(logger: logger) }) } catch {
            logger.warning("could not write unverified-attempt summaries yet", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
        }
    }
}

/// Listens for key changes while the application runs, from the moment the replica has started (it needs the
/// schema's tables: started earlier it would fail and retry, a warning each time, until `migrate` has run).
struct KeyChangeFeedService: Service {
    let feed: KeyChangeFeed
    let drain: Drain
    func run() async throws {
        await cancelWhenGracefulShutdown {
            guard await drain.waitUntilStarted() else { return }
            await feed.run()
        }
    }
}

/// Shuts the shared HTTP client down with the application.
struct ForwarderService: Service {
    let forwarder: Forwarder
    func run() async throws {
        try? await gracefulShutdown()
        try await forwarder.shutdown()
    }
}

/// Turns the expired leases of requests whose replica died into unknown outcomes, on every replica, every few
/// seconds (DESIGN §7 Leases): no 409 and no phantom hold outlives a crashed request by more than its lease.
struct LeaseSweepService: Service {
    let ledger: SpendLedger
    let interval: Duration
    let drain: Drain
    let logger: Logger

    func run() async throws {
        guard await cancelWhenGracefulShutdown({ await drain.waitUntilStarted() }) else { return }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let wait = interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            if Task.isCancelled || Task.isShuttingDownGracefully { return }
            do {
                // Cancelled by graceful shutdown: with Postgres down, PostgresNIO's pool keeps a waiting query
                // until its circuit breaker trips (about a minute, and again after it), and the pool itself is shut
                // down last, after this service — a sweep waiting on it held shutdown for ever (issue 27).
                let ledger = self.ledger, logger = self.logger
                let expired = try await cancelWhenGracefulShutdown { try await ledger.expireLeases(logger: logger) }
                if expired > 0 { logger.warning("expired the leases of requests whose replica died", metadata: ["reservations": "\(expired)"]) }
            } catch {
                logger.debug("lease sweep failed", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
            }
        }
    }
}

/// GET /v1/keys/{id} spend, read from the ledger in the key's own time zone.
struct LedgerKeySpendReader: KeySpendReader {
    let spend: SpendRepository

    func spend(of key: VaultKey, now: Date, context: KeybrakeRequestContext) async throws -> KeySpend {
        let periods = KeyCalendar.periods(now: now, timezone: key.policy.timezone)
        let (day, month) = (periods.day, periods.month)
        let (d, m, t) = try await spend.key(tenantId: key.tenantId, keyId: key.id, day: day, month: month, logger: context.logger)
        return KeySpend(
            today: .init(start: day, settled: d.settled, reserved: d.reserved, unknown: d.unknown, cap: key.policy.dailyCap),
            month: .init(start: month, settled: m.settled, reserved: m.reserved, unknown: m.unknown, cap: key.policy.monthlyCap),
            total: .init(start: KeyCalendar.periods(now: key.createdAt, timezone: key.policy.timezone).day, settled: t.settled, reserved: t.reserved, unknown: t.unknown, cap: key.policy.totalCap)
        )
    }
}

/// Keeps the current and next months' audit partitions in place (daily; idempotent), so rows land in
/// monthly partitions that `keybrake audit prune` can drop whole.
struct AuditPartitionService: Service {
    let repository: AuditRepository
    let drain: Drain
    let logger: Logger

    func run() async throws {
        // Once the replica has started (the tables exist), then once an hour: partitions ahead, and the usage of the
        // days that closed since (each day is rolled up once, by whichever replica comes first).
        guard await cancelWhenGracefulShutdown({ await drain.waitUntilStarted() }) else { return }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            var pause = Duration.seconds(3_600)
            // Cancelled by graceful shutdown, for the reason given in LeaseSweepService.
            let repository = self.repository, logger = self.logger
            do { try await cancelWhenGracefulShutdown { try await repository.ensurePartitions(logger: logger) } } catch {
                logger.warning("could not create audit partitions", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
                pause = .seconds(60)
            }
            do { try await cancelWhenGracefulShutdown { try await repository.rollUpUsage(logger: logger) } } catch {
                logger.warning("could not roll up usage by day", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
                pause = .seconds(60)
            }
            let wait = pause
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
        }
    }
}
