import Foundation
import Logging
import PostgresNIO

/// Applies `Migrations/NNNN_name.sql` in order, each in its own transaction, recorded in
/// `schema_migrations`. A Postgres advisory lock serialises concurrent migrators (two servers
/// starting together): the second waits, then finds nothing left to do.
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

    public init(migrations: [Migration]) { self.migrations = migrations.sorted { $0.version < $1.version } }

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
        self.init(migrations: found)
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

    /// Applies pending migrations; returns the versions applied by this call.
    @discardableResult
    public func migrate(client: PostgresClient, logger: Logger) async throws -> [Int] {
        try await client.withConnection { connection in
            _ = try await connection.query("SELECT pg_advisory_lock(\(Migrator.advisoryLockKey))", logger: logger)
            do {
                let applied = try await applyPending(connection, logger: logger)
                _ = try await connection.query("SELECT pg_advisory_unlock(\(Migrator.advisoryLockKey))", logger: logger)
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Migrator.advisoryLockKey))", logger: logger)
                throw error
            }
        }
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
                for statement in SQLScript.statements(migration.sql) {
                    _ = try await tx.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                _ = try await tx.query(
                    "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger
                )
            }
            applied.append(migration.version)
        }
        return applied
    }
}
