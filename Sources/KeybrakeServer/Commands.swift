import ArgumentParser
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Logging
import Metrics
import PostgresNIO
import Prometheus
import Storage
import Tenants
import Vault
import Webhooks
import Audit

/// `keybrake` — the server and its maintenance commands.
public struct KeybrakeCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "keybrake",
        abstract: "Spend-capped, audited proxy for AI agents calling Stripe, Twilio and Resend.",
        subcommands: [Serve.self, Migrate.self, RotateMasterKey.self, TenantCommand.self, AuditCommand.self, GenerateMasterKey.self],
        defaultSubcommand: Serve.self
    )

    public init() {}
}

struct CommonOptions: ParsableArguments {
    @Option(help: "Postgres URL (overrides DATABASE_URL).")
    var databaseURL: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (overrides LOG_LEVEL).")
    var logLevel: String?

    @Option(help: "How long one attempt to connect to Postgres may take, in milliseconds (overrides KEYBRAKE_DATABASE_CONNECT_TIMEOUT_MS; default 5000).")
    var connectTimeoutMs: Int?

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        if let databaseURL { env["DATABASE_URL"] = databaseURL }
        if let connectTimeoutMs { env["KEYBRAKE_DATABASE_CONNECT_TIMEOUT_MS"] = String(connectTimeoutMs) }
        return env
    }

    func configuration() throws -> AppConfiguration {
        do {
            return try AppConfiguration.fromEnvironment(environment)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    /// `DATABASE_URL` and the connect timeout, for the commands that need nothing else.
    func database() throws -> DatabaseURL {
        do { return try AppConfiguration.databaseURL(environment) } catch { throw ValidationError("\(error)") }
    }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        let level = logLevel ?? ProcessInfo.processInfo.environment["LOG_LEVEL"] ?? "info"
        logger.logLevel = Logger.Level(rawValue: level.lowercased()) ?? .info
        return logger
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the admin API and the proxy (applies pending migrations once the database answers).",
        discussion: """
            Listens at once; /ready answers 503 (database_unreachable, schema_missing, draining) until the database \
            answers with the schema in place. SIGTERM or SIGINT drains and exits 0; a second one stops at once \
            (exit 128 + signal). Exit codes: README "Operations".
            """
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "Address to listen on (overrides KEYBRAKE_HOST).") var host: String?
    @Option(help: "Port to listen on (overrides KEYBRAKE_PORT).") var port: Int?
    @Flag(help: "Do not apply migrations at start-up.") var noMigrate = false

    func run() async throws {
        var config = try common.configuration()
        if let host { config.host = host }
        if let port { config.port = port }
        let logger = common.logger("keybrake")
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        // With --no-migrate the migrations are still read, when present, to know which schema this build needs.
        let directory = Migrator.defaultDirectory()
        let migrator = noMigrate ? nil : try Migrator(directory: directory)
        let required = (migrator ?? (try? Migrator(directory: directory)))?.latestVersion ?? 1
        let drain = Drain()
        let app = try buildApplication(
            config, logger: logger, startup: StartupPlan(migrator: migrator, requiredVersion: required), drain: drain,
            maintainAuditPartitions: true, metricsRegistry: registry
        )
        logger.info("starting", metadata: ["address": "\(config.host):\(config.port)", "database": "\(config.databaseURL.redacted)",
                                           "master_key": "\(config.masterKeys.active.id)"])
        do {
            try await runServer(app, drain: drain, shutdownTimeout: config.effectiveShutdownTimeout, logger: logger)
        } catch let stop as StopSignalService.StopNow {
            throw ExitCode(stop.exitCode)
        }
        logger.info("stopped")
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending SQL migrations from Migrations/.",
        discussion: """
            Exit codes: 0 done; 69 the database could not be reached (refused, name not resolved, no answer within the \
            connect timeout); 78 it answered but refused us (authentication, TLS, database missing); 1 a migration failed; \
            64 bad arguments or configuration.
            """
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "Migrations directory (default: KEYBRAKE_MIGRATIONS_DIR or ./Migrations).") var directory: String?
    @Option(help: "Wait up to this many seconds for the database to accept connections (init containers). Default 0: one attempt.")
    var wait: Int = 0

    func run() async throws {
        let url = try common.database()
        let logger = common.logger("keybrake.migrate")
        let migrator = try Migrator(directory: directory ?? Migrator.defaultDirectory())
        let connection = try await connectOrExit(url, command: "migrate", wait: .seconds(max(wait, 0)), logger: logger)
        let applied: Migrator.Applied
        do { applied = try await migrator.apply(connection: connection, logger: logger) } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
        print(applied.versions.isEmpty ? "migrations: already up to date" : "migrations: applied \(applied.versions.map(String.init).joined(separator: ", "))")
    }
}

/// One connection to Postgres, or one line on stderr saying where and why not, and the exit code for it: 69 when
/// the database could not be reached (worth retrying), 78 when it answered and refused (authentication, TLS, no such
/// database: a configuration to fix). With `wait`, failed attempts are retried until it has passed (the first
/// failure is printed once), except refusals: waiting does not fix a password.
func connectOrExit(_ url: DatabaseURL, command: String, wait: Duration = .zero, logger: Logger) async throws -> PostgresConnection {
    let deadline = ContinuousClock.now + wait
    var announced = false
    while true {
        do {
            return try await DatabaseProbe.connect(url, logger: logger)
        } catch let error as DatabaseConnectError {
            let now = ContinuousClock.now
            if error.isPermanent || now >= deadline {
                FileHandle.standardError.write(Data("keybrake \(command): \(error.description)\n".utf8))
                throw ExitCode(error.isPermanent ? 78 : 69)
            }
            if !announced {
                FileHandle.standardError.write(Data("keybrake \(command): waiting for the database (\(error.description))\n".utf8))
                announced = true
            }
            try await Task.sleep(for: min(.milliseconds(500), deadline - now))
        }
    }
}

/// Checks that Postgres answers before handing the commands that use a pool their client: the pool alone would
/// wait out its connection backoff and circuit breaker (about a minute) and then say only that.
func withCheckedPostgresClient<T: Sendable>(
    _ url: DatabaseURL, command: String, logger: Logger, _ body: @Sendable (DatabasePool) async throws -> T
) async throws -> T {
    let probe = try await connectOrExit(url, command: command, logger: logger)
    try? await probe.close()
    return try await withPostgresClient(url, logger: logger) { try await body(DatabasePool(fixed: $0)) }
}

struct RotateMasterKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-master-key",
        abstract: "Re-encrypt every vendor credential under the active (first) master key.",
        discussion: """
            Put the new key first in KEYBRAKE_MASTER_KEYS and keep the old one after it (servers decrypt with any \
            configured key), run this, then remove the old key from configuration.
            """
    )

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let config = try common.configuration()
        let logger = common.logger("keybrake.rotate")
        let sealer = CredentialSealer(ring: config.masterKeys)
        let (result, endpoints) = try await withCheckedPostgresClient(config.databaseURL, command: "rotate-master-key", logger: logger) {
            (try await CredentialStore(client: $0, sealer: sealer).rotateAll(logger: logger),
             try await WebhookRepository(client: $0, sealer: sealer).resealAll(logger: logger))
        }
        print("rotate-master-key: re-encrypted \(result.rotated) credential(s) and \(endpoints) webhook endpoint secret(s) under key '\(config.masterKeys.active.id)'")
        if !result.failed.isEmpty {
            for (tenant, vendor) in result.failed { print("  could not decrypt: tenant \(tenant) vendor \(vendor)") }
            throw ExitCode(1)
        }
    }
}

struct TenantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tenant", abstract: "Operator commands on tenants.",
                                                    subcommands: [SetPlan.self])

    struct SetPlan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-plan", abstract: "Change a tenant's plan (free or pro).")

        @OptionGroup var common: CommonOptions
        @Argument(help: "Tenant id (ten_…).") var tenantId: String
        @Argument(help: "free or pro.") var plan: String

        func run() async throws {
            guard let plan = Plan(rawValue: plan) else { throw ValidationError("plan must be free or pro") }
            let url = try common.database()
            let logger = common.logger("keybrake.tenant")
            let tenantId = self.tenantId
            let tenant = try await withCheckedPostgresClient(url, command: "tenant set-plan", logger: logger) {
                try await PostgresTenantRepository(client: $0).setPlan(tenantId: tenantId, plan: plan, logger: logger)
            }
            guard let tenant else { throw ValidationError("no tenant \(tenantId)") }
            print("tenant \(tenant.id) is now on plan \(tenant.plan.rawValue)")
        }
    }
}

struct GenerateMasterKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate-master-key",
                                                    abstract: "Print a new `id:base64` master key for KEYBRAKE_MASTER_KEYS.")

    @Option(help: "Key id.") var id: String = "k" + String(Int(Date().timeIntervalSince1970))

    func run() throws { print(MasterKeyRing.generateConfigLine(id: id)) }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "Audit trail maintenance.",
                                                    subcommands: [Prune.self])

    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop audit rows older than a date.",
            discussion: "Whole months before the date are dropped as partitions (instant, no vacuum); older rows left in the default partition are deleted."
        )

        @OptionGroup var common: CommonOptions
        @Option(help: "First day to keep, YYYY-MM-DD (UTC). Rows created before it are removed.") var before: String

        func run() async throws {
            let utc = KeyCalendar.calendar("UTC")
            let parts = before.split(separator: "-").compactMap { Int($0) }
            guard parts.count == 3, let date = utc.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2])) else {
                throw ValidationError("--before must be YYYY-MM-DD")
            }
            let url = try common.database()
            let logger = common.logger("keybrake.audit")
            let result = try await withCheckedPostgresClient(url, command: "audit prune", logger: logger) { client in
                let repository = AuditRepository(client: client)
                let pruned = try await repository.prune(before: date, logger: logger)
                try await repository.ensurePartitions(logger: logger)
                return pruned
            }
            print("audit prune: dropped \(result.partitions.count) partition(s)\(result.partitions.isEmpty ? "" : " (" + result.partitions.joined(separator: ", ") + ")"), deleted \(result.rows) row(s) before \(before)")
        }
    }
}
