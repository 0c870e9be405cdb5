import Audit
import HTTPLayer
import KeybrakeCore
import Keys
import Logging
import Prometheus
import Proxy
import ServiceLifecycle
import Storage
import Tenants
import TokenAuth
import Vault
import Webhooks

/// Every repository and shared service of one process, each built once from the configuration and the pools: the
/// router (`buildRouter`) and the background services (`backgroundServices`) take theirs from here.
public struct Services: Sendable {
    public let configuration: AppConfiguration
    /// The data plane's pool. Replaced whole when it is stuck in PostgresNIO's connection backoff after an outage or
    /// a failover (README "High availability").
    public let postgres: DatabasePool
    /// Admin reads' own pool and the standby's, when this process opened them: started and stopped as services.
    let adminPostgres: DatabasePool?
    let standby: DatabasePool?
    /// Admin and dashboard reads: their own pool, statement timeout and per-tenant limit (DESIGN §16). Never the
    /// data plane's `postgres`, except where a caller builds services without one (tests of other things).
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

    // Tenants
    let tenantsConfiguration: TenantsConfiguration
    let tenants: PostgresTenantRepository
    let adminTokens: AdminTokenAuthenticator
    // Vault
    let credentials: CredentialStore
    // Keys. The limiters are shared by the admin API and the dashboard: one budget per tenant.
    let keys: PostgresKeyRepository
    let vaultKeys: VaultKeyAuthenticator
    let keySpend: LedgerKeySpendReader
    let keyCreations: TenantActionLimiter
    let keyChangeLimit: TenantActionLimiter
    let keyChanges: KeyChangeAcknowledgements
    // Audit, spend and usage reads may come from the standby (`KEYBRAKE_READ_DATABASE_URL`); key lists and
    // everything that decides a request, never.
    let audit: AuditRepository
    let spend: SpendRepository
    // Proxy
    let ledger: SpendLedger
    let idempotency: IdempotencyStore
    // Webhooks
    let webhooks: WebhookRepository
    let webhookReads: WebhookReads
    let webhookURLs: WebhookURLPolicy

    public init(configuration config: AppConfiguration, postgres: DatabasePool, adminPostgres: DatabasePool? = nil, standby: DatabasePool? = nil,
                verifier: TokenVerifier? = nil,
                clock: any KeybrakeCore.Clock = SystemClock(), metricsRegistry: PrometheusCollectorRegistry = .init(),
                drain: Drain = Drain(started: true)) {
        self.configuration = config
        self.drain = drain
        self.postgres = postgres
        self.adminPostgres = adminPostgres
        self.standby = standby
        self.adminReads = AdminReads(client: adminPostgres ?? postgres, standby: standby, settings: config.adminReads)
        let verifier = verifier ?? TokenVerifier(configuration: config.tokens)
        self.verifier = verifier
        self.unverifiedAttempts = UnverifiedAttempts(client: postgres)
        self.clock = clock
        self.metricsRegistry = metricsRegistry
        self.keyDirectory = config.keysFromMemory ? KeyDirectory() : nil
        self.forwarder = Forwarder(timeout: config.proxy.upstreamTimeout, maxResponseBody: config.proxy.maxResponseBody,
                                   settings: config.proxy.upstream)

        var tenantsConfiguration = TenantsConfiguration(freeMonthlyRequests: config.freeMonthlyRequests, operatorToken: config.operatorToken,
                                                        signupsPerMinutePerClient: config.signupsPerMinutePerClient)
        tenantsConfiguration.adminTokensPerMinutePerTenant = config.adminTokensPerMinutePerTenant
        tenantsConfiguration.maxAdminTokensPerTenant = config.maxAdminTokensPerTenant
        tenantsConfiguration.maxSessionsPerTenant = config.maxSessionsPerTenant
        tenantsConfiguration.trustedProxies = config.trustedProxies
        self.tenantsConfiguration = tenantsConfiguration
        self.tenants = PostgresTenantRepository(client: postgres)
        self.adminTokens = AdminTokenAuthenticator(repository: tenants, verifier: verifier, trustedProxies: config.trustedProxies)

        let sealer = CredentialSealer(ring: config.masterKeys)
        self.credentials = CredentialStore(client: postgres, sealer: sealer)

        let standbyReads = adminReads.preferringStandby()
        self.audit = AuditRepository(client: postgres, reads: standbyReads)
        self.spend = SpendRepository(reads: standbyReads)

        self.keys = PostgresKeyRepository(client: postgres, reads: adminReads, maxRootKeys: config.maxKeysPerTenant)
        self.vaultKeys = VaultKeyAuthenticator(client: postgres, verifier: verifier, directory: keyDirectory)
        self.keySpend = LedgerKeySpendReader(spend: spend)
        self.keyCreations = TenantActionLimiter(perMinutePerTenant: config.keyCreationsPerMinutePerTenant)
        self.keyChangeLimit = TenantActionLimiter(perMinutePerTenant: config.keyChangesPerMinutePerTenant, action: "changing vault keys")
        self.keyChanges = KeyChangeAcknowledgements(client: postgres, settings: config.keyLease)

        self.ledger = SpendLedger(client: postgres)
        self.idempotency = IdempotencyStore(client: postgres)

        self.webhooks = WebhookRepository(client: postgres, sealer: sealer)
        self.webhookReads = WebhookReads(reads: adminReads)
        self.webhookURLs = WebhookURLPolicy(allowPrivate: config.webhooks.allowPrivate)
    }

    /// A tenant's plan and monthly request quota (`GET /v1/usage`).
    func planAndQuota(tenantId: String, context: KeybrakeRequestContext) async throws -> (plan: String, quota: Int?) {
        guard let tenant = try await tenants.tenant(id: tenantId, logger: context.logger) else { throw KeybrakeError.adminTokenInvalid }
        return (tenant.plan.rawValue, tenantsConfiguration.monthlyQuota(for: tenant.plan))
    }

    /// What runs beside the HTTP server, in start order; graceful shutdown stops them in reverse, so the pools (first)
    /// close last, after every request in flight has settled and written its audit row. With a `startup` plan the
    /// database is brought up after the listener (`DatabaseStartupService`).
    func backgroundServices(startup: StartupPlan?, maintainAuditPartitions: Bool, logger: Logger) -> [any Service] {
        let config = configuration
        var services: [any Service] = [postgres]
        if let adminPostgres { services.append(adminPostgres) }
        services += [ForwarderService(forwarder: forwarder), DrainService(drain: drain)] as [any Service]
        if let standby { services.append(standby) }
        if let startup { services.append(DatabaseStartupService(url: config.databaseURL, plan: startup, drain: drain, logger: logger)) }
        services.append(LeaseSweepService(ledger: ledger, interval: config.proxy.leaseSweepInterval, drain: drain, logger: logger))
        services.append(UnverifiedAttemptsService(attempts: unverifiedAttempts, interval: config.unverifiedSummaryInterval, logger: logger))
        if let metrics = buildMetricsListener(config.metrics, registry: metricsRegistry, logger: logger) { services.append(metrics) }
        if let keyDirectory {
            let feed = KeyChangeFeed(url: config.listenDatabaseURL ?? config.databaseURL, pool: postgres, directory: keyDirectory,
                                     settings: config.keyLease, logger: logger)
            services.append(KeyChangeFeedService(feed: feed, drain: drain))
        }
        if config.webhooks.delivers {
            let transport = HTTPWebhookTransport(urls: webhookURLs)
            let dispatcher = WebhookDispatcher(client: postgres, repository: webhooks, transport: transport, settings: config.webhooks, clock: clock)
            services.append(WebhookDeliveryService(dispatcher: dispatcher, transport: transport, interval: config.webhooks.pollInterval,
                                                   drain: drain, logger: logger))
        }
        if maintainAuditPartitions { services.append(AuditPartitionService(repository: audit, drain: drain, logger: logger)) }
        return services
    }
}
