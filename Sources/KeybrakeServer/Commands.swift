import ArgumentParser
import Foundation
import Hummingbird
import KeybrakeCore
import Logging
import Metrics
import Prometheus
import Storage
import Tenants
import Vault
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

    func configuration() throws -> AppConfiguration {
        var env = ProcessInfo.processInfo.environment
        if let databaseURL { env["DATABASE_URL"] = databaseURL }
        do {
            return try AppConfiguration.fromEnvironment(env)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        let level = logLevel ?? ProcessInfo.processInfo.environment["LOG_LEVEL"] ?? "info"
        logger.logLevel = Logger.Level(rawValue: level.lowercased()) ?? .info
        return logger
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the admin API and the proxy (applies pending migrations first).")

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
        let app = try buildApplication(
            config, logger: logger, migrationsDirectory: noMigrate ? nil : Migrator.defaultDirectory(), maintainAuditPartitions: true,
            metricsRegistry: registry
        )
        logger.info("starting", metadata: ["address": "\(config.host):\(config.port)", "database": "\(config.databaseURL.redacted)",
                                           "master_key": "\(config.masterKeys.active.id)"])
        try await app.runService()
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending SQL migrations from Migrations/.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Migrations directory (default: KEYBRAKE_MIGRATIONS_DIR or ./Migrations).") var directory: String?

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        guard let text = common.databaseURL ?? env["DATABASE_URL"] else { throw ValidationError("DATABASE_URL is not set") }
        let url = try DatabaseURL(text)
        let logger = common.logger("keybrake.migrate")
        let migrator = try Migrator(directory: directory ?? Migrator.defaultDirectory())
        let applied = try await withPostgresClient(url, logger: logger) { try await migrator.migrate(client: $0, logger: logger) }
        print(applied.isEmpty ? "migrations: already up to date" : "migrations: applied \(applied.map(String.init).joined(separator: ", "))")
    }
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
        let result = try await withPostgresClient(config.databaseURL, logger: logger) {
            try await CredentialStore(client: $0, sealer: sealer).rotateAll(logger: logger)
        }
        print("rotate-master-key: re-encrypted \(result.rotated) credential(s) under key '\(config.masterKeys.active.id)'")
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
            let env = ProcessInfo.processInfo.environment
            guard let text = common.databaseURL ?? env["DATABASE_URL"] else { throw ValidationError("DATABASE_URL is not set") }
            let logger = common.logger("keybrake.tenant")
            let tenantId = self.tenantId
            let tenant = try await withPostgresClient(try DatabaseURL(text), logger: logger) {
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
            let env = ProcessInfo.processInfo.environment
            guard let text = common.databaseURL ?? env["DATABASE_URL"] else { throw ValidationError("DATABASE_URL is not set") }
            let logger = common.logger("keybrake.audit")
            let result = try await withPostgresClient(try DatabaseURL(text), logger: logger) { client in
                let repository = AuditRepository(client: client)
                let pruned = try await repository.prune(before: date, logger: logger)
                try await repository.ensurePartitions(logger: logger)
                return pruned
            }
            print("audit prune: dropped \(result.partitions.count) partition(s)\(result.partitions.isEmpty ? "" : " (" + result.partitions.joined(separator: ", ") + ")"), deleted \(result.rows) row(s) before \(before)")
        }
    }
}
