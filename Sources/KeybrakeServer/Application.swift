import Audit
import Dashboard
import HTTPLayer
import Hummingbird
import HummingbirdCore
import KeybrakeCore
import Keys
import Logging
import Prometheus
import Proxy
import Storage
import Tenants
import Vault
import Webhooks

/// Wires every module's routes into one router (DESIGN §2: each feature module owns its routes); the repositories
/// come from `Services`, built once.
public func buildRouter(_ services: Services) -> Router<KeybrakeRequestContext> {
    let s = services, config = services.configuration
    let proxy = ProxyController(pipeline: ProxyPipeline(
        config: config.proxy, authenticator: s.vaultKeys, credentials: s.credentials, ledger: s.ledger, idempotency: s.idempotency,
        forwarder: s.forwarder, clock: s.clock, tenants: s.tenants, drain: s.drain, trustedProxies: config.trustedProxies,
        unverifiedAttempts: s.unverifiedAttempts, gate: config.admission.seats > 0 ? TenantGate(settings: config.admission) : nil
    ))
    let keys = KeysController(repository: s.keys, verifier: s.verifier, clock: s.clock, spendReader: s.keySpend,
                              creations: s.keyCreations, changes: s.keyChangeLimit, acknowledgements: s.keyChanges)
    let unverified = s.unverifiedAttempts
    let childKeys = ChildKeysController(keys: keys, authenticator: s.vaultKeys, limits: config.childKeys,
                                        mintsPerMinutePerTenant: config.childKeyMintsPerMinutePerTenant, trustedProxies: config.trustedProxies) { key in
        unverified.record(UnverifiedAttempts.Attempt(tenantId: key.tenantId, keyId: key.id, keyLabel: key.policy.label,
                                                     vendor: key.policy.vendor.rawValue, method: "POST", path: "/v1/child-keys"))
    }
    let tenants = TenantController(repository: s.tenants, verifier: s.verifier, configuration: s.tenantsConfiguration, clock: s.clock)

    let router = Router(context: KeybrakeRequestContext.self)
    router.add(middleware: RequestEnvelopeMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: proxy.hostRouting)
    router.add(middleware: StartupGateMiddleware(drain: s.drain))

    HealthController(postgres: s.postgres, drain: s.drain).addRoutes(to: router)
    // Every tenant's traffic: on the public port only behind the token (DESIGN §9); otherwise 404 here.
    if config.metrics.token != nil {
        MetricsController(registry: s.metricsRegistry, token: config.metrics.token).addRoutes(to: router)
    }
    tenants.addPublicRoutes(to: router)
    proxy.addRoutes(to: router)
    childKeys.addRoutes(to: router)
    DashboardController(
        postgres: s.postgres, authenticator: s.adminTokens, tenants: s.tenants, tenantsConfiguration: s.tenantsConfiguration,
        keys: s.keys, verifier: s.verifier, credentials: s.credentials, audit: s.audit, spend: s.spend, keySpend: s.keySpend,
        clock: s.clock, keyChanges: s.keyChanges, keyCreations: s.keyCreations, keyChangeLimit: s.keyChangeLimit,
        webhooks: DashboardWebhooks(repository: s.webhooks, reads: s.webhookReads, urls: s.webhookURLs)
    ).addRoutes(to: router)

    let admin = router.group("/v1").add(middleware: AdminAuthMiddleware(authenticator: s.adminTokens)).add(middleware: ReadLagMiddleware())
    tenants.addAdminRoutes(to: admin)
    VaultController(store: s.credentials).addAdminRoutes(to: admin)
    keys.addAdminRoutes(to: admin)
    AuditController(audit: s.audit, spend: s.spend, clock: s.clock) { tenantId, context in
        try await services.planAndQuota(tenantId: tenantId, context: context)
    }.addAdminRoutes(to: admin)
    WebhookController(repository: s.webhooks, reads: s.webhookReads, urls: s.webhookURLs, clock: s.clock).addAdminRoutes(to: admin)
    return router
}

/// The whole server: router, pools and background services. With a `startup` plan (`serve`) the listener comes up
/// first and the database after it (`DatabaseStartupService`, README "Operations"); without one (tests) the
/// database is taken as ready, migrated by the caller.
public func buildApplication(
    _ config: AppConfiguration, logger: Logger, startup: StartupPlan? = nil, drain: Drain? = nil, maintainAuditPartitions: Bool = false,
    metricsRegistry: PrometheusCollectorRegistry = .init(), clock: any KeybrakeCore.Clock = SystemClock()
) throws -> some ApplicationProtocol {
    let pool = { (url: DatabaseURL, max: Int, min: Int) in
        DatabasePool(url: url, maxConnections: max, minConnections: min, preparedStatements: config.databasePreparedStatements, logger: logger)
    }
    // Admin reads get a pool of their own (DESIGN §16): a flood of slow audit filters waits for these few
    // connections, never for the data plane's.
    let services = Services(
        configuration: config, postgres: pool(config.databaseURL, config.databaseMaxConnections, config.databaseMinConnections),
        adminPostgres: pool(config.databaseURL, config.adminReads.maxConnections, 0),
        standby: config.readDatabaseURL.map { pool($0, config.adminReads.maxConnections, 0) },
        clock: clock, metricsRegistry: metricsRegistry, drain: drain ?? Drain(started: startup == nil))
    // Connection hygiene: a client that goes quiet is dropped, the number of connections and the size of headers
    // are bounded (DESIGN §7; README "Configuration").
    let connections = config.connections
    let http1 = HTTP1Channel.Configuration(
        idleTimeout: .milliseconds(connections.idleTimeout.milliseconds),
        httpDecoderConfiguration: .init(maxHeaderFieldSize: connections.maxHeaderBytes, maxHeaderListSize: connections.maxHeaderBytes,
                                        maxHeaderFieldCount: connections.maxHeaderFields))
    var app = Application(
        router: buildRouter(services),
        server: .http1(configuration: http1),
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: "keybrake",
                             availableConnectionsDelegate: MaximumAvailableConnections(connections.maxConnections)),
        logger: logger
    )
    app.addServices(services.backgroundServices(startup: startup, maintainAuditPartitions: maintainAuditPartitions, logger: logger))
    return app
}
