import Foundation
import HTTPLayer
import KeybrakeCore
import Keys
import Proxy
import Storage
import Tenants
import TokenAuth
import Vault
import Webhooks

/// Server settings from the environment (DESIGN §3); command-line flags override them.
public struct AppConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 8080
    public var databaseURL: DatabaseURL
    public var masterKeys: MasterKeyRing
    public var operatorToken: String?
    public var freeMonthlyRequests: Int = 1000
    public var signupsPerMinutePerClient: Int = 10
    public var connections = ConnectionLimits()
    /// Proxies in front of Keybrake whose `X-Forwarded-For` is believed for per-client limits.
    public var trustedProxies: TrustedProxies = .none
    /// Vault keys and admin tokens each cost an argon2 hash to create: per tenant and minute.
    public var keyCreationsPerMinutePerTenant: Int = 60
    /// Key changes (PATCH, revoke) per tenant per minute: each is announced to every replica and acknowledged.
    public var keyChangesPerMinutePerTenant: Int = 600
    /// Child keys (DESIGN §9): depth and fan-out of the key tree, and mints per tenant per minute (argon2 bounds them).
    public var childKeys = ChildLimits()
    public var childKeyMintsPerMinutePerTenant: Int = 600
    /// Key rows from memory under a lease (DESIGN §4): off, every request reads its key from Postgres.
    public var keysFromMemory = true
    public var keyLease = KeyChangeFeed.Settings()
    /// Budget alerts' delivery (DESIGN §14).
    public var webhooks = WebhookSettings()
    /// Where the key-change listener connects: LISTEN needs a session, so behind a transaction-mode pooler
    /// (PgBouncer) it must reach Postgres directly (`KEYBRAKE_LISTEN_DATABASE_URL`).
    public var listenDatabaseURL: DatabaseURL?
    /// Named prepared statements on the data plane (`KEYBRAKE_DB_PREPARED_STATEMENTS`): off behind PgBouncer < 1.21
    /// in transaction mode, where a statement prepared in one server session is unknown in the next.
    public var databasePreparedStatements = true
    /// Audit, spend, usage and dashboard reads from a standby (`KEYBRAKE_READ_DATABASE_URL`), never anything that
    /// decides a request; nil: the primary.
    public var readDatabaseURL: DatabaseURL?
    public var adminTokensPerMinutePerTenant: Int = 20
    public var maxAdminTokensPerTenant: Int = 100
    public var maxKeysPerTenant: Int = 10_000
    public var maxSessionsPerTenant: Int = 100
    /// Token verification: cache, hashing cores, failed-attempt limits per (id, client) and per client (DESIGN §4).
    public var tokens = TokenVerifier.Configuration()
    /// How often unverified attempts on a key are written as one summary audit row per key (DESIGN §4: a minute).
    public var unverifiedSummaryInterval: Duration = .seconds(60)
    /// `GET /metrics`: behind `KEYBRAKE_METRICS_TOKEN` and/or on `KEYBRAKE_METRICS_ADDRESS` (DESIGN §9).
    public var metrics = MetricsSettings()
    public var proxy = ProxyConfiguration(upstreams: [
        .stripe: "https://api.stripe.com", .twilio: "https://api.twilio.com", .resend: "https://api.resend.com",
    ])
    public var freeMonthlyRequestsForProxy: Int { proxy.freeMonthlyRequests }
    public var databaseMaxConnections: Int = 32
    /// Connections kept open at all times (see `DatabaseURL.clientConfiguration`). 0 by default: with a kept minimum,
    /// PostgresNIO's pool can stop the process on a precondition when Postgres restarts under load (the chaos test
    /// hit `minimumConcurrentConnections <= stats.active` in `createNewDemandConnectionIfPossible`; upstream has
    /// related crash reports for minimum > 0). A minimum saves a timer task per query; it is not worth a crash.
    public var databaseMinConnections: Int = 0
    /// Admin and dashboard reads: pool size, statement timeout, concurrent reads per tenant (DESIGN §16;
    /// `KEYBRAKE_ADMIN_DB_MAX_CONNECTIONS`, `KEYBRAKE_ADMIN_STATEMENT_TIMEOUT_MS`, `KEYBRAKE_ADMIN_READS_PER_TENANT`).
    public var adminReads = AdminReads.Settings()
    /// Fair admission per tenant on the data plane (DESIGN §16; `KEYBRAKE_ADMISSION_SEATS` (0: off),
    /// `KEYBRAKE_ADMISSION_SEATS_PER_TENANT`, `KEYBRAKE_ADMISSION_QUEUE_PER_TENANT`, `KEYBRAKE_ADMISSION_WAIT_MS`).
    public var admission = TenantGate.Settings()
    /// How long SIGTERM's drain may take before the requests still in flight are cancelled (their reservations are
    /// left to their leases); nil: the upstream timeout plus 10 s, so a request that waits for its vendor gets its
    /// 504 and settles first (`KEYBRAKE_SHUTDOWN_TIMEOUT_MS`).
    public var shutdownTimeout: Duration?
    public var effectiveShutdownTimeout: Duration { shutdownTimeout ?? proxy.upstreamTimeout + .seconds(10) }

    public init(databaseURL: DatabaseURL, masterKeys: MasterKeyRing) {
        self.databaseURL = databaseURL
        self.masterKeys = masterKeys
    }

    public struct ConfigError: Error, CustomStringConvertible {
        public let description: String
    }

    /// `KEYBRAKE_ADMISSION_*` (see `TenantGate.Settings`).
    static func readAdmission(_ env: [String: String], into a: inout TenantGate.Settings) throws {
        if let raw = env["KEYBRAKE_ADMISSION_SEATS"], !raw.isEmpty {
            guard let n = Int(raw), n >= 0 else { throw ConfigError(description: "KEYBRAKE_ADMISSION_SEATS must be a whole number ≥ 0 (0: no admission gate)") }
            a.seats = n
            a.seatsPerTenant = max(1, n * 3 / 4)  // three quarters, unless KEYBRAKE_ADMISSION_SEATS_PER_TENANT says
        }
        if let n = try positiveInt(env, "KEYBRAKE_ADMISSION_SEATS_PER_TENANT") {
            guard a.seats == 0 || n <= a.seats else {
                throw ConfigError(description: "KEYBRAKE_ADMISSION_SEATS_PER_TENANT must be at most KEYBRAKE_ADMISSION_SEATS (\(a.seats))")
            }
            a.seatsPerTenant = n
        }
        if let raw = env["KEYBRAKE_ADMISSION_QUEUE_PER_TENANT"], !raw.isEmpty {
            guard let n = Int(raw), n >= 0 else { throw ConfigError(description: "KEYBRAKE_ADMISSION_QUEUE_PER_TENANT must be a whole number ≥ 0 (0: refuse at once)") }
            a.queuePerTenant = n
        }
        if let n = try positiveInt(env, "KEYBRAKE_ADMISSION_WAIT_MS") { a.maxWait = .milliseconds(n) }
    }

    /// A whole number > 0 from `name`, or nil when it is unset.
    static func positiveInt(_ env: [String: String], _ name: String) throws -> Int? {
        guard let raw = env[name], !raw.isEmpty else { return nil }
        guard let value = Int(raw), value > 0 else { throw ConfigError(description: "\(name) must be a whole number > 0") }
        return value
    }

    /// Reads DESIGN §3's variables. Secrets' values never appear in errors.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> AppConfiguration {
        let db = try databaseURL(env)
        let ring = try masterKeyRing(env)
        var config = AppConfiguration(databaseURL: db, masterKeys: ring)
        if let host = env["KEYBRAKE_HOST"], !host.isEmpty { config.host = host }
        if let port = env["KEYBRAKE_PORT"], !port.isEmpty {
            guard let p = Int(port), (0...65535).contains(p) else { throw ConfigError(description: "KEYBRAKE_PORT must be a port number") }
            config.port = p
        }
        if let token = env["KEYBRAKE_OPERATOR_TOKEN"], !token.isEmpty { config.operatorToken = token }
        if let token = env["KEYBRAKE_METRICS_TOKEN"], !token.isEmpty {
            guard token.count >= 16 else { throw ConfigError(description: "KEYBRAKE_METRICS_TOKEN must be at least 16 characters") }
            config.metrics.token = token
        }
        if let address = env["KEYBRAKE_METRICS_ADDRESS"], !address.isEmpty {
            guard let parsed = MetricsSettings.parseAddress(address) else {
                throw ConfigError(description: "KEYBRAKE_METRICS_ADDRESS must be host:port (127.0.0.1:9090, [::1]:9090)")
            }
            config.metrics.address = parsed
        }
        if let quota = env["KEYBRAKE_FREE_MONTHLY_REQUESTS"], !quota.isEmpty {
            guard let q = Int(quota), q >= 0 else { throw ConfigError(description: "KEYBRAKE_FREE_MONTHLY_REQUESTS must be a whole number ≥ 0") }
            config.freeMonthlyRequests = q
            config.proxy.freeMonthlyRequests = q
        }
        if let proxies = env["KEYBRAKE_TRUSTED_PROXIES"], !proxies.isEmpty {
            guard let parsed = TrustedProxies(parsing: proxies) else {
                throw ConfigError(description: "KEYBRAKE_TRUSTED_PROXIES must be a comma-separated list of IP addresses or CIDRs (10.0.0.0/8, ::1)")
            }
            config.trustedProxies = parsed
        }
        if let raw = env["KEYBRAKE_CLIENT_ADDRESS_HEADER"], !raw.isEmpty {
            guard let header = TrustedProxies.Header(rawValue: raw.lowercased()) else {
                throw ConfigError(description: "KEYBRAKE_CLIENT_ADDRESS_HEADER must be forwarded or x-forwarded-for: the one header your proxy writes")
            }
            config.trustedProxies.header = header
        }
        if let idle = env["KEYBRAKE_IDLE_TIMEOUT_MS"], !idle.isEmpty {
            guard let t = Int(idle), t > 0 else { throw ConfigError(description: "KEYBRAKE_IDLE_TIMEOUT_MS must be a whole number > 0") }
            config.connections.idleTimeout = .milliseconds(t)
        }
        if let max = env["KEYBRAKE_MAX_CONNECTIONS"], !max.isEmpty {
            guard let m = Int(max), m > 0 else { throw ConfigError(description: "KEYBRAKE_MAX_CONNECTIONS must be a whole number > 0") }
            config.connections.maxConnections = m
        }
        for (name, apply) in [
            ("KEYBRAKE_MAX_KEY_DEPTH", { (n: Int) in config.childKeys.maxDepth = n }),
            ("KEYBRAKE_MAX_CHILDREN_PER_KEY", { (n: Int) in config.childKeys.maxChildren = n }),
            ("KEYBRAKE_CHILD_KEY_MINTS_PER_MINUTE", { (n: Int) in config.childKeyMintsPerMinutePerTenant = n }),
        ] as [(String, (Int) -> Void)] {
            if let raw = env[name], !raw.isEmpty {
                guard let n = Int(raw), n > 0 else { throw ConfigError(description: "\(name) must be a whole number > 0") }
                apply(n)
            }
        }
        if let raw = env["KEYBRAKE_KEYS_FROM_MEMORY"], !raw.isEmpty {
            guard ["on", "off", "true", "false", "1", "0"].contains(raw) else {
                throw ConfigError(description: "KEYBRAKE_KEYS_FROM_MEMORY must be on or off")
            }
            config.keysFromMemory = ["on", "true", "1"].contains(raw)
        }
        if let raw = env["KEYBRAKE_WEBHOOK_ALLOW_PRIVATE"], !raw.isEmpty {
            guard ["true", "false", "on", "off", "1", "0"].contains(raw) else {
                throw ConfigError(description: "KEYBRAKE_WEBHOOK_ALLOW_PRIVATE must be true or false")
            }
            config.webhooks.allowPrivate = ["on", "true", "1"].contains(raw)
        }
        if let raw = env["KEYBRAKE_WEBHOOK_POLL_MS"], !raw.isEmpty {
            guard let ms = Int(raw), ms >= 10 else { throw ConfigError(description: "KEYBRAKE_WEBHOOK_POLL_MS must be a whole number ≥ 10") }
            config.webhooks.pollInterval = .milliseconds(ms)
        }
        if let raw = env["KEYBRAKE_WEBHOOK_TIMEOUT_MS"], !raw.isEmpty {
            guard let ms = Int(raw), (100...60_000).contains(ms) else { throw ConfigError(description: "KEYBRAKE_WEBHOOK_TIMEOUT_MS must be a whole number from 100 to 60000") }
            config.webhooks.timeout = .milliseconds(ms)
        }
        if let raw = env["KEYBRAKE_KEY_LEASE_MS"], !raw.isEmpty {
            guard let ms = Int(raw), ms >= 1000 else { throw ConfigError(description: "KEYBRAKE_KEY_LEASE_MS must be a whole number ≥ 1000") }
            config.keyLease.lease = .milliseconds(ms)
            config.keyLease.heartbeat = .milliseconds(ms / 5)
            config.keyLease.margin = .milliseconds(ms / 10)
        }
        if let raw = env["KEYBRAKE_LISTEN_DATABASE_URL"], !raw.isEmpty {
            config.listenDatabaseURL = try DatabaseURL(raw)
            config.listenDatabaseURL?.connectTimeout = db.connectTimeout
        }
        if let raw = env["KEYBRAKE_DB_PREPARED_STATEMENTS"], !raw.isEmpty {
            guard ["on", "off", "true", "false", "1", "0"].contains(raw) else {
                throw ConfigError(description: "KEYBRAKE_DB_PREPARED_STATEMENTS must be on or off")
            }
            config.databasePreparedStatements = ["on", "true", "1"].contains(raw)
        }
        if let raw = env["KEYBRAKE_READ_DATABASE_URL"], !raw.isEmpty {
            config.readDatabaseURL = try DatabaseURL(raw)
            config.readDatabaseURL?.connectTimeout = db.connectTimeout
        }
        if let raw = env["KEYBRAKE_SHUTDOWN_TIMEOUT_MS"], !raw.isEmpty {
            guard let ms = Int(raw), ms >= 0 else { throw ConfigError(description: "KEYBRAKE_SHUTDOWN_TIMEOUT_MS must be a whole number ≥ 0") }
            config.shutdownTimeout = .milliseconds(ms)
        }
        if let l = try positiveInt(env, "KEYBRAKE_KEY_CREATIONS_PER_MINUTE") { config.keyCreationsPerMinutePerTenant = l }
        if let l = try positiveInt(env, "KEYBRAKE_KEY_CHANGES_PER_MINUTE") { config.keyChangesPerMinutePerTenant = l }
        if let l = try positiveInt(env, "KEYBRAKE_MAX_ADMIN_TOKENS_PER_TENANT") { config.maxAdminTokensPerTenant = l }
        if let l = try positiveInt(env, "KEYBRAKE_MAX_KEYS_PER_TENANT") { config.maxKeysPerTenant = l }
        if let l = try positiveInt(env, "KEYBRAKE_MAX_SESSIONS_PER_TENANT") { config.maxSessionsPerTenant = l }
        if let l = try positiveInt(env, "KEYBRAKE_ADMIN_TOKENS_PER_MINUTE") { config.adminTokensPerMinutePerTenant = l }
        if let l = try positiveInt(env, "KEYBRAKE_SIGNUPS_PER_MINUTE") { config.signupsPerMinutePerClient = l }
        for vendor in Vendor.allCases {
            let name = "KEYBRAKE_UPSTREAM_\(vendor.rawValue.uppercased())"
            if let url = env[name], !url.isEmpty {
                guard let u = URL(string: url), u.scheme == "http" || u.scheme == "https", u.host != nil else {
                    throw ConfigError(description: "\(name) must be an http(s) URL")
                }
                config.proxy.upstreams[vendor] = url.hasSuffix("/") ? String(url.dropLast()) : url
            }
        }
        if let timeout = env["KEYBRAKE_UPSTREAM_TIMEOUT_MS"], !timeout.isEmpty {
            guard let t = Int(timeout), t > 0 else { throw ConfigError(description: "KEYBRAKE_UPSTREAM_TIMEOUT_MS must be a whole number > 0") }
            config.proxy.upstreamTimeout = .milliseconds(t)
        }
        try readUpstreamSettings(env, into: &config.proxy.upstream)
        if let extra = env["KEYBRAKE_FORWARD_HEADERS"], !extra.isEmpty {
            let names = extra.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
            // The vendor credential and the Idempotency-Key are Keybrake's to send; its own headers never leave.
            let reserved: Set<String> = ["authorization", "idempotency-key", "host", "content-length", "connection", "transfer-encoding", "content-encoding"]
            if let bad = names.first(where: { reserved.contains($0) || $0.hasPrefix("x-keybrake-") }) {
                throw ConfigError(description: "KEYBRAKE_FORWARD_HEADERS may not name \(bad): Keybrake sets or strips it")
            }
            config.proxy.extraForwardedHeaders = Set(names)
        }
        if let margin = env["KEYBRAKE_LEASE_MARGIN_MS"], !margin.isEmpty {
            guard let m = Int(margin), m >= 0 else { throw ConfigError(description: "KEYBRAKE_LEASE_MARGIN_MS must be a whole number ≥ 0") }
            config.proxy.leaseMargin = .milliseconds(m)
        }
        if let wait = env["KEYBRAKE_IN_FLIGHT_WAIT_MS"], !wait.isEmpty {
            guard let t = Int(wait), t >= 0 else { throw ConfigError(description: "KEYBRAKE_IN_FLIGHT_WAIT_MS must be a whole number ≥ 0") }
            config.proxy.inFlightWait = .milliseconds(t)
        }
        if let deadline = env["KEYBRAKE_DB_DEADLINE_MS"], !deadline.isEmpty {
            guard let t = Int(deadline), t > 0 else { throw ConfigError(description: "KEYBRAKE_DB_DEADLINE_MS must be a whole number > 0") }
            config.proxy.databaseDeadline = .milliseconds(t)
        }
        if let value = env["KEYBRAKE_DB_MAX_CONNECTIONS"], !value.isEmpty {
            guard let n = Int(value), n > 0 else { throw ConfigError(description: "KEYBRAKE_DB_MAX_CONNECTIONS must be a whole number > 0") }
            config.databaseMaxConnections = n
        }
        if let value = env["KEYBRAKE_DB_MIN_CONNECTIONS"], !value.isEmpty {
            guard let n = Int(value), n >= 0 else { throw ConfigError(description: "KEYBRAKE_DB_MIN_CONNECTIONS must be a whole number ≥ 0") }
            config.databaseMinConnections = n
        }
        if let value = env["KEYBRAKE_ADMIN_DB_MAX_CONNECTIONS"], !value.isEmpty {
            guard let n = Int(value), n > 0 else { throw ConfigError(description: "KEYBRAKE_ADMIN_DB_MAX_CONNECTIONS must be a whole number > 0") }
            config.adminReads.maxConnections = n
        }
        if let value = env["KEYBRAKE_ADMIN_STATEMENT_TIMEOUT_MS"], !value.isEmpty {
            guard let n = Int(value), n > 0 else { throw ConfigError(description: "KEYBRAKE_ADMIN_STATEMENT_TIMEOUT_MS must be a whole number > 0") }
            config.adminReads.statementTimeout = .milliseconds(n)
        }
        if let value = env["KEYBRAKE_ADMIN_READS_PER_TENANT"], !value.isEmpty {
            guard let n = Int(value), n > 0 else { throw ConfigError(description: "KEYBRAKE_ADMIN_READS_PER_TENANT must be a whole number > 0") }
            config.adminReads.perTenant = n
        }
        if let raw = env["KEYBRAKE_ADMIN_READS_QUEUE_PER_TENANT"], !raw.isEmpty {
            guard let n = Int(raw), n >= 0 else { throw ConfigError(description: "KEYBRAKE_ADMIN_READS_QUEUE_PER_TENANT must be a whole number ≥ 0 (0: refuse at once)") }
            config.adminReads.queuePerTenant = n
        }
        if let n = try positiveInt(env, "KEYBRAKE_ADMIN_READS_WAIT_MS") { config.adminReads.maxWait = .milliseconds(n) }
        try readAdmission(env, into: &config.admission)
        if let rates = env["KEYBRAKE_FX_RATES"], !rates.isEmpty {
            do { config.proxy.fx = try FXTable(parsing: rates) } catch {
                throw ConfigError(description: "KEYBRAKE_FX_RATES is invalid (expected eur=1.08,gbp=1.27: USD per unit): \(error)")
            }
        }
        if let price = env["KEYBRAKE_TWILIO_SEGMENT_USD"], !price.isEmpty {
            guard let p = MicroUSD.parse(dollars: price) else { throw ConfigError(description: "KEYBRAKE_TWILIO_SEGMENT_USD must be a dollar amount") }
            config.proxy.twilio.pricePerSegment = p
        }
        if let price = env["KEYBRAKE_TWILIO_CARRIER_FEE_USD"], !price.isEmpty {
            guard let p = MicroUSD.parse(dollars: price) else { throw ConfigError(description: "KEYBRAKE_TWILIO_CARRIER_FEE_USD must be a dollar amount") }
            config.proxy.twilio.carrierFeePerSegment = p
        }
        if let price = env["KEYBRAKE_RESEND_EMAIL_USD"], !price.isEmpty {
            guard let p = MicroUSD.parse(dollars: price) else { throw ConfigError(description: "KEYBRAKE_RESEND_EMAIL_USD must be a dollar amount") }
            config.proxy.resend.pricePerEmail = p
        }
        return config
    }

    /// `DATABASE_URL` with `KEYBRAKE_DATABASE_CONNECT_TIMEOUT_MS` (every command that talks to Postgres reads it so).
    public static func databaseURL(_ env: [String: String]) throws -> DatabaseURL {
        guard let text = env["DATABASE_URL"], !text.isEmpty else {
            throw ConfigError(description: "DATABASE_URL is not set (e.g. postgres://keybrake@127.0.0.1:5432/keybrake); `make run` sets up a local one")
        }
        var url = try DatabaseURL(text)
        if let raw = env["KEYBRAKE_DATABASE_CONNECT_TIMEOUT_MS"], !raw.isEmpty {
            guard let ms = Int(raw), ms >= 100 else {
                throw ConfigError(description: "KEYBRAKE_DATABASE_CONNECT_TIMEOUT_MS must be a whole number ≥ 100")
            }
            url.connectTimeout = .milliseconds(ms)
        }
        return url
    }

    /// Upstream connections (README "Upstream connections"): budget per vendor, bounded wait, keep-alive, egress.
    static func readUpstreamSettings(_ env: [String: String], into u: inout UpstreamSettings) throws {
        func whole(_ name: String, min: Int) throws -> Int? {
            guard let text = env[name], !text.isEmpty else { return nil }
            guard let n = Int(text), n >= min else { throw ConfigError(description: "\(name) must be a whole number ≥ \(min)") }
            return n
        }
        if let n = try whole("KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT", min: 1) { u.maxInFlight = n }
        for vendor in Vendor.allCases {
            if let n = try whole("KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT_\(vendor.rawValue.uppercased())", min: 1) { u.maxInFlightByVendor[vendor] = n }
        }
        if let n = try whole("KEYBRAKE_UPSTREAM_H2_STREAMS", min: 1) { u.streamsPerConnection = n }
        if let n = try whole("KEYBRAKE_UPSTREAM_BUSY_WAIT_MS", min: 0) { u.busyWait = .milliseconds(n) }
        if let n = try whole("KEYBRAKE_UPSTREAM_MAX_WAITING", min: 0) { u.maxWaiting = n }
        if let n = try whole("KEYBRAKE_UPSTREAM_IDLE_TIMEOUT_MS", min: 1) { u.idleTimeout = .milliseconds(n) }
        if let n = try whole("KEYBRAKE_UPSTREAM_CONNECT_TIMEOUT_MS", min: 1) { u.connectTimeout = .milliseconds(n) }
        if let path = env["KEYBRAKE_UPSTREAM_CA_FILE"], !path.isEmpty {
            do { u.extraTrustRoots = try UpstreamSettings.loadCABundle(path: path) } catch { throw ConfigError(description: "\(error)") }
        }
        do { u.egressProxy = try EgressProxy.fromEnvironment(env) } catch { throw ConfigError(description: "\(error)") }
    }

    /// `KEYBRAKE_MASTER_KEYS`, or the contents of `KEYBRAKE_MASTER_KEYS_FILE`.
    public static func masterKeyRing(_ env: [String: String]) throws -> MasterKeyRing {
        if let inline = env["KEYBRAKE_MASTER_KEYS"], !inline.isEmpty {
            return try MasterKeyRing(parsing: inline)
        }
        if let path = env["KEYBRAKE_MASTER_KEYS_FILE"], !path.isEmpty {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ConfigError(description: "KEYBRAKE_MASTER_KEYS_FILE \(path) cannot be read")
            }
            return try MasterKeyRing(parsing: text)
        }
        throw MasterKeyRing.ConfigError.empty
    }
}

/// Bounds on client connections (slow or hostile clients).
public struct ConnectionLimits: Sendable {
    /// A connection that sends nothing for this long is closed: a request that stalls mid-headers or mid-body, or
    /// an idle keep-alive connection.
    public var idleTimeout: Duration = .seconds(60)
    /// Connections open at once; past it new ones wait in the listen backlog.
    public var maxConnections: Int = 10_000
    /// One header line, and all headers together.
    public var maxHeaderBytes: Int = 32 * 1024
    public var maxHeaderFields: Int = 200

    public init() {}
}
