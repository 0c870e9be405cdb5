import Foundation
import Logging
import PostgresNIO
import Storage
import XCTest

final class MigratorTests: XCTestCase {
    /// Two servers starting together against an empty database: both succeed, each migration runs once.
    func testConcurrentMigratorsApplyEachMigrationOnce() async throws {
        let name = "kb_migr_\(UInt32.random(in: 0...UInt32.max))"
        try await TestDatabase.withClient { db in _ = try await db.query("CREATE DATABASE \(unescaped: name)") }
        var url = try TestDatabase.url
        url.database = name
        let migrator = try Migrator(directory: TestDatabase.migrationsDirectory)
        XCTAssertFalse(migrator.migrations.isEmpty)
        let logger = Logger(label: "test.migrate")
        let target = url
        let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
            for _ in 0..<2 {
                group.addTask { try await withPostgresClient(target, logger: logger) { try await migrator.migrate(client: $0, logger: logger) } }
            }
            var all: [[Int]] = []
            for try await a in group { all.append(a) }
            return all
        }
        XCTAssertEqual(applied.flatMap { $0 }.sorted(), migrator.migrations.map(\.version), "each version applied by exactly one migrator")
        let again = try await withPostgresClient(url, logger: logger) { try await migrator.migrate(client: $0, logger: logger) }
        XCTAssertEqual(again, [], "running again is a no-op")
        let recorded = try await withPostgresClient(url, logger: logger) { db in
            var versions: [Int] = []
            for try await v in try await db.query("SELECT version FROM schema_migrations ORDER BY version").decode(Int.self) { versions.append(v) }
            return versions
        }
        XCTAssertEqual(recorded, migrator.migrations.map(\.version))
        try await TestDatabase.withClient { db in _ = try await db.query("DROP DATABASE \(unescaped: name) WITH (FORCE)") }
    }

    /// A failing migration leaves nothing behind (it runs in a transaction) and is not recorded.
    func testFailedMigrationRollsBack() async throws {
        let name = "kb_migr_\(UInt32.random(in: 0...UInt32.max))"
        try await TestDatabase.withClient { db in _ = try await db.query("CREATE DATABASE \(unescaped: name)") }
        var url = try TestDatabase.url
        url.database = name
        let logger = Logger(label: "test.migrate")
        let migrator = Migrator(migrations: [
            .init(version: 1, name: "ok", sql: "CREATE TABLE one (x INT);"),
            .init(version: 2, name: "broken", sql: "CREATE TABLE two (x INT); SELECT * FROM missing_table;"),
        ])
        do {
            _ = try await withPostgresClient(url, logger: logger) { try await migrator.migrate(client: $0, logger: logger) }
            XCTFail("broken migration should fail")
        } catch {}
        let (versions, twoExists) = try await withPostgresClient(url, logger: logger) { db in
            var versions: [Int] = []
            for try await v in try await db.query("SELECT version FROM schema_migrations").decode(Int.self) { versions.append(v) }
            var exists = false
            for try await e in try await db.query("SELECT to_regclass('two') IS NOT NULL").decode(Bool.self) { exists = e }
            return (versions, exists)
        }
        XCTAssertEqual(versions, [1])
        XCTAssertFalse(twoExists)
        try await TestDatabase.withClient { db in _ = try await db.query("DROP DATABASE \(unescaped: name) WITH (FORCE)") }
    }
}
