import Foundation
import Logging
import PostgresNIO

/// Applies `Migrations/NNNN_name.sql` in order, each in its own transaction, recorded in
/// `schema_migrations`. A Postgres advisory lock serialises concurrent migrators (two servers
/// starting together): the second waits, then finds nothing left to do.
///
/// Numbered migrations are history and are never edited. The current body of each SQL function lives once, in
/// `Migrations/functions/<name>.sql`, and of each view in `Migrations/views/<name>.sql` (Flyway's "repeatable
/// migrations"): after the numbered migrations, every such file whose SHA-256 differs from the one recorded in
/// `schema_functions` is applied again — functions, then views (recorded as `views/<name>`), each in file-name
/// order — all in one transaction under the same lock. `git log Migrations/functions/kb_reserve.sql` is that
/// function's history.
/// Taking a file out is two steps: a numbered migration drops its object, and the migrator forgets its checksum.
public struct Migrator: Sendable {
    public struct Migration: Sendable, Equatable {
        public let version: Int
        public let name: String
        public let sql: String

        public init(version: Int, name: String, sql: String) {
            self.version = version
            self.name = name
            self.sql = sql
        }
    }

    /// One repeatable file: the current definition of one function (`functions/<name>.sql`, named `<name>`) or view
    /// (`views/<name>.sql`, named `views/<name>`), re-applied when its text changes.
    public struct FunctionFile: Sendable, Equatable {
        public let name: String
        public let sql: String

        public init(name: String, sql: String) {
            self.name = name
            self.sql = sql
        }
    }

    /// What one `apply` call did: the migration versions and the function files it applied.
    public struct Applied: Sendable, Equatable {
        public var versions: [Int] = []
        public var functions: [String] = []

        public init(versions: [Int] = [], functions: [String] = []) {
            self.versions = versions
            self.functions = functions
        }
    }

    public enum MigrationError: Error, CustomStringConvertible {
        case directoryNotFound(String)
        case badFileName(String)
        case duplicateVersion(Int)
        public var description: String {
            switch self {
            case .directoryNotFound(let d): "migrations directory not found: \(d) (set KEYBRAKE_MIGRATIONS_DIR)"
            case .badFileName(let f): "migration file name must be NNNN_name.sql: \(f)"
            case .duplicateVersion(let v): "two migration files have version \(v)"
            }
        }
    }

    /// Arbitrary constant shared by every Keybrake process ("kbmigr" in ASCII).
    static let advisoryLockKey: Int64 = 0x6B62_6D69_6772

    public let migrations: [Migration]
    /// In name order (in the C locale: functions, then `views/…`), the order they are applied in.
    public let functions: [FunctionFile]

    public init(migrations: [Migration], functions: [FunctionFile] = []) {
        self.migrations = migrations.sorted { $0.version < $1.version }
        self.functions = functions.sorted { $0.name < $1.name }
    }

    public init(directory: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw MigrationError.directoryNotFound(directory)
        }
        var found: [Migration] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: directory) where file.hasSuffix(".sql") {
            let stem = file.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]) else {
                throw MigrationError.badFileName(file)
            }
            let sql = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
            found.append(Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql))
        }
        let versions = found.map(\.version)
        if let dup = versions.first(where: { v in versions.filter { $0 == v }.count > 1 }) {
            throw MigrationError.duplicateVersion(dup)
        }
        var functions: [FunctionFile] = []
        for (folder, prefix) in [("functions", ""), ("views", "views/")] {
            let repeatable = directory + "/" + folder
            guard FileManager.default.fileExists(atPath: repeatable) else { continue }
            for file in try FileManager.default.contentsOfDirectory(atPath: repeatable) where file.hasSuffix(".sql") {
                let sql = try String(contentsOfFile: repeatable + "/" + file, encoding: .utf8)
                functions.append(FunctionFile(name: prefix + String(file.dropLast(4)), sql: sql))
            }
        }
        self.init(migrations: found, functions: functions)
    }

    /// Finds `Migrations/`: `KEYBRAKE_MIGRATIONS_DIR`, else `./Migrations`, else next to the executable's package.
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let dir = environment["KEYBRAKE_MIGRATIONS_DIR"], !dir.isEmpty { return dir }
        let cwd = FileManager.default.currentDirectoryPath + "/Migrations"
        if FileManager.default.fileExists(atPath: cwd) { return cwd }
        // .build/<triple>/<config>/keybrake → package root is three levels up from the binary's folder.
        var url = URL(fileURLWithPath: CommandLine.arguments.first ?? ".").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = url.appendingPathComponent("Migrations").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            url = url.deletingLastPathComponent()
        }
        return cwd
    }

    /// Applies pending migrations, then changed function files; returns the versions applied by this call.
    @discardableResult
    public func migrate(client: PostgresClient, logger: Logger) async throws -> [Int] {
        try await apply(client: client, logger: logger).versions
    }

    /// Applies pending migrations, then the function files whose text changed; returns what it applied.
    @discardableResult
    public func apply(client: PostgresClient, logger: Logger) async throws -> Applied {
        try await client.withConnection { connection in try await apply(connection: connection, logger: logger) }
    }

    /// The same on a connection of the caller's (`migrate` and `serve` at start-up use one made by `DatabaseProbe`,
    /// not the pool: see there why).
    @discardableResult
    public func apply(connection: PostgresConnection, logger: Logger) async throws -> Applied {
        _ = try await connection.query("SELECT pg_advisory_lock(\(Migrator.advisoryLockKey))", logger: logger)
        do {
            var applied = Applied()
            applied.versions = try await applyPending(connection, logger: logger)
            applied.functions = try await applyChangedFunctions(connection, logger: logger)
            _ = try await connection.query("SELECT pg_advisory_unlock(\(Migrator.advisoryLockKey))", logger: logger)
            return applied
        } catch {
            _ = try? await connection.query("SELECT pg_advisory_unlock(\(Migrator.advisoryLockKey))", logger: logger)
            throw error
        }
    }

    /// The newest numbered migration this build knows.
    public var latestVersion: Int { migrations.last?.version ?? 0 }

    /// The newest migration applied to the database, nil when none ever was (no `schema_migrations` table).
    /// Reads without the advisory lock: a replica waiting for someone else's `migrate` must not queue behind it.
    public static func appliedVersion(connection: PostgresConnection, logger: Logger) async throws -> Int? {
        var exists = false
        for try await found in try await connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger).decode(Bool.self) {
            exists = found
        }
        guard exists else { return nil }
        var version: Int?
        for try await v in try await connection.query("SELECT max(version) FROM schema_migrations", logger: logger).decode(Int?.self) {
            version = v
        }
        return version
    }

    private func applyPending(_ connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        _ = try await connection.query("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )
            """, logger: logger)
        var done = Set<Int>()
        for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger).decode(Int.self) {
            done.insert(version)
        }
        var applied: [Int] = []
        for migration in migrations where !done.contains(migration.version) {
            logger.info("applying migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            try await connection.withTransaction(logger: logger) { tx in
                try await Self.run(migration.sql, on: tx, logger: logger)
                _ = try await tx.query(
                    "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger
                )
            }
            applied.append(migration.version)
        }
        return applied
    }

    /// Re-applies each function file whose SHA-256 (computed by Postgres, so Storage needs no crypto library)
    /// differs from the recorded one. One transaction: a change spanning two functions lands whole or not at all.
    private func applyChangedFunctions(_ connection: PostgresConnection, logger: Logger) async throws -> [String] {
        _ = try await connection.query("""
            CREATE TABLE IF NOT EXISTS schema_functions (
                name TEXT PRIMARY KEY,
                checksum TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )
            """, logger: logger)
        if functions.isEmpty { return [] }
        let names = functions.map(\.name)
        let texts = functions.map(\.sql)
        var changed: [(name: String, checksum: String)] = []
        for try await (name, checksum, isCurrent) in try await connection.query("""
            SELECT f.name, f.checksum, s.checksum IS NOT DISTINCT FROM f.checksum
            FROM (SELECT name, encode(sha256(convert_to(sql, 'UTF8')), 'hex') AS checksum
                  FROM unnest(\(names)::text[], \(texts)::text[]) AS f(name, sql)) f
            LEFT JOIN schema_functions s ON s.name = f.name
            ORDER BY f.name COLLATE "C"
            """, logger: logger).decode((String, String, Bool).self) where !isCurrent {
            changed.append((name, checksum))
        }
        // A file taken out of functions/ leaves its row (its object is dropped by the numbered migration that took it
        // out, 0017 for kb_begin): forget it, so that a file of that name added again is applied even if its text is
        // the old one.
        _ = try await connection.query("DELETE FROM schema_functions WHERE name <> ALL(\(names)::text[])", logger: logger)
        if changed.isEmpty { return [] }
        let byName = Dictionary(uniqueKeysWithValues: functions.map { ($0.name, $0.sql) })
        try await connection.withTransaction(logger: logger) { tx in
            for function in changed {
                logger.info("applying function", metadata: ["name": "\(function.name)"])
                try await Self.run(byName[function.name] ?? "", on: tx, logger: logger)
                _ = try await tx.query("""
                    INSERT INTO schema_functions (name, checksum) VALUES (\(function.name), \(function.checksum))
                    ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()
                    """, logger: logger)
            }
        }
        return changed.map(\.name)
    }

    /// Runs a file's statements one by one (the extended protocol takes one statement per query).
    private static func run(_ script: String, on connection: PostgresConnection, logger: Logger) async throws {
        for statement in SQLScript.statements(script) {
            _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        }
    }
}
