import Foundation
import Logging
import PostgresNIO
import Storage
import XCTest

final class MigratorTests: XCTestCase {
    /// Two servers starting together against an empty database: both succeed, each migration runs once.
    func testConcurrentMigratorsApplyEachMigrationOnce() async throws {
        let (url, name) = try await Self.scratchDatabase()
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
        try await Self.dropScratchDatabase(name)
    }

    /// 0004 replaces the spend ledger table with counters + a view: on a database that already holds spend, the
    /// counters, the settled / reserved / unknown breakdown and the month's request count come through unchanged.
    func testHotPathMigrationKeepsExistingSpendAndUsage() async throws {
        let (url, name) = try await Self.scratchDatabase()
        let logger = Logger(label: "test.migrate")
        let all = try Migrator(directory: TestDatabase.migrationsDirectory)
        let before = Migrator(migrations: all.migrations.filter { $0.version < 4 })
        let rows = try await withPostgresClient(url, logger: logger) { db in
            _ = try await before.migrate(client: db, logger: logger)
            _ = try await db.query("""
                INSERT INTO tenants (id, name, email, plan) VALUES ('ten_m', 'm', 'm@example.com', 'free')
                """)
            _ = try await db.query("""
                INSERT INTO vault_keys (id, tenant_id, vendor, label, token_hash, allowed_endpoints, daily_cap_micros)
                VALUES ('key_m', 'ten_m', 'stripe', 'm', '$argon2id$unused', '{"POST /v1/charges"}', 10000000)
                """)
            _ = try await db.query("""
                INSERT INTO spend_ledger (key_id, period, period_start, settled_micros, reserved_micros, unknown_micros)
                VALUES ('key_m', 'day', '2026-11-23', 5000000, 1000000, 2000000), ('key_m', 'month', '2026-11-01', 5000000, 1000000, 2000000)
                """)
            _ = try await db.query("""
                INSERT INTO reservations (id, tenant_id, key_id, amount_micros, day, month, state, settled_micros) VALUES
                ('res_1', 'ten_m', 'key_m', 5000000, '2026-11-23', '2026-11-01', 'settled', 5000000),
                ('res_2', 'ten_m', 'key_m', 1000000, '2026-11-23', '2026-11-01', 'held', NULL),
                ('res_3', 'ten_m', 'key_m', 2000000, '2026-11-23', '2026-11-01', 'unknown', NULL)
                """)
            _ = try await db.query("INSERT INTO tenant_monthly_usage (tenant_id, month, requests) VALUES ('ten_m', '2026-11-01', 42)")
            let applied = try await all.migrate(client: db, logger: logger)
            // 0004 and every migration after it (later ones keep what 0004 carried over).
            XCTAssertEqual(applied, Array(4...max(4, applied.last ?? 4)))

            var ledger: [String: [Int64]] = [:]
            for try await r in try await db.query("""
                SELECT period, counted_micros, settled_micros, reserved_micros, unknown_micros FROM spend_ledger WHERE key_id = 'key_m'
                """).decode((String, Int64, Int64, Int64, Int64).self) { ledger[r.0] = [r.1, r.2, r.3, r.4] }
            // The cap still sees the $8 already counted: a $2.50 reserve is refused, a $2 one fits exactly.
            var results: [String] = []
            for (amount, id) in [(Int64(2_500_000), "res_4"), (Int64(2_000_000), "res_5")] {
                for try await r in try await db.query("""
                    SELECT result FROM kb_reserve('key_m', 'ten_m', \(amount), '2026-11-23', '2026-11-01', '2026-11-01', 1000, \(id))
                    """).decode(String.self) { results.append(r) }
            }
            var usage: Int64 = 0
            for try await n in try await db.query("""
                SELECT sum(requests)::bigint FROM tenant_monthly_usage WHERE tenant_id = 'ten_m' AND month = '2026-11-01'
                """).decode(Int64.self) { usage = n }
            return (ledger, usage, results)
        }
        XCTAssertEqual(rows.0["day"], [8_000_000, 5_000_000, 1_000_000, 2_000_000])
        XCTAssertEqual(rows.0["month"], [8_000_000, 5_000_000, 1_000_000, 2_000_000])
        XCTAssertEqual(rows.1, 43, "42 requests carried over, plus the one reserve that went through")
        XCTAssertEqual(rows.2, ["daily_usd_cap_exceeded", "ok"])
        try await Self.dropScratchDatabase(name)
    }

    /// A failing migration leaves nothing behind (it runs in a transaction) and is not recorded.
    func testFailedMigrationRollsBack() async throws {
        let (url, name) = try await Self.scratchDatabase()
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
        try await Self.dropScratchDatabase(name)
    }

    /// Function bodies live in `Migrations/functions/`: a database migrated before they moved there (the numbered
    /// migrations alone, as on main, functions as 0002/0004 left them) and a fresh one end with the same schema.
    func testFreshMigrateAndUpgradeFromNumberedOnlyGiveTheSameSchema() async throws {
        let logger = Logger(label: "test.migrate")
        let all = try Migrator(directory: TestDatabase.migrationsDirectory)
        XCTAssertTrue(all.functions.contains { $0.name == "kb_reserve" })
        let numberedOnly = Migrator(migrations: all.migrations)

        let (upgradedURL, upgradedName) = try await Self.scratchDatabase()
        let upgraded = try await withPostgresClient(upgradedURL, logger: logger) { db in
            _ = try await numberedOnly.apply(client: db, logger: logger)
            let applied = try await all.apply(client: db, logger: logger)
            XCTAssertEqual(applied.versions, [])
            XCTAssertEqual(applied.functions, all.functions.map(\.name), "every function file applied once on upgrade")
            let again = try await all.apply(client: db, logger: logger)
            XCTAssertEqual(again, Migrator.Applied(), "unchanged files are not applied again")
            return try await Self.schemaFacts(db)
        }
        let (freshURL, freshName) = try await Self.scratchDatabase()
        let fresh = try await withPostgresClient(freshURL, logger: logger) { db in
            _ = try await all.apply(client: db, logger: logger)
            return try await Self.schemaFacts(db)
        }
        XCTAssertTrue(fresh.contains { $0.hasPrefix("function kb_reserve(") })
        XCTAssertTrue(fresh.contains { $0.hasPrefix("column schema_functions.checksum ") })
        XCTAssertTrue(fresh.contains { $0.hasPrefix("view spend_ledger ") })
        XCTAssertFalse(fresh.contains { $0.hasPrefix("function kb_begin(") || $0.hasPrefix("function kb_begin_many(") }, "0017 dropped them")
        XCTAssertEqual(fresh.count, upgraded.count)
        for (a, b) in zip(fresh, upgraded) where a != b { XCTFail("fresh:\n\(a)\nupgraded:\n\(b)") }
        try await Self.dropScratchDatabase(upgradedName)
        try await Self.dropScratchDatabase(freshName)
    }

    /// A function file is applied again when its text changes, and only then; a broken one changes nothing.
    func testChangedFunctionFileIsReappliedAndABrokenOneRollsBack() async throws {
        let (url, name) = try await Self.scratchDatabase()
        let logger = Logger(label: "test.migrate")
        @Sendable func file(_ body: String) -> Migrator.FunctionFile {
            .init(name: "kb_answer", sql: "CREATE OR REPLACE FUNCTION kb_answer() RETURNS INTEGER LANGUAGE sql AS $fn$ \(body) $fn$;")
        }
        let results = try await withPostgresClient(url, logger: logger) { db in
            func answer() async throws -> Int {
                var n = 0
                for try await v in try await db.query("SELECT kb_answer()").decode(Int.self) { n = v }
                return n
            }
            var log: [String] = []
            let first = try await Migrator(migrations: [], functions: [file("SELECT 1")]).apply(client: db, logger: logger)
            var n = try await answer()
            log.append("\(first.functions) \(n)")
            let same = try await Migrator(migrations: [], functions: [file("SELECT 1")]).apply(client: db, logger: logger)
            n = try await answer()
            log.append("\(same.functions) \(n)")
            let changed = try await Migrator(migrations: [], functions: [file("SELECT 2")]).apply(client: db, logger: logger)
            n = try await answer()
            log.append("\(changed.functions) \(n)")
            let broken = Migrator(migrations: [], functions: [
                file("SELECT 3"), .init(name: "kb_broken", sql: "CREATE OR REPLACE FUNCTION kb_broken() RETURNS INTEGER LANGUAGE sql AS $fn$ SELECT x FROM missing_table $fn$;"),
            ])
            do {
                _ = try await broken.apply(client: db, logger: logger)
                log.append("broken applied")
            } catch {
                n = try await answer()
                log.append("broken failed \(n)")
            }
            return log
        }
        XCTAssertEqual(results, ["[\"kb_answer\"] 1", "[] 1", "[\"kb_answer\"] 2", "broken failed 2"])
        try await Self.dropScratchDatabase(name)
    }

    /// A function file taken out of functions/ is forgotten (its row in schema_functions goes), so a file of that name
    /// added again is applied even with its old text.
    func testARemovedFunctionFileIsForgotten() async throws {
        let (url, name) = try await Self.scratchDatabase()
        let logger = Logger(label: "test.migrate")
        let a = Migrator.FunctionFile(name: "kb_a", sql: "CREATE OR REPLACE FUNCTION kb_a() RETURNS INTEGER LANGUAGE sql AS $fn$ SELECT 1 $fn$;")
        let b = Migrator.FunctionFile(name: "kb_b", sql: "CREATE OR REPLACE FUNCTION kb_b() RETURNS INTEGER LANGUAGE sql AS $fn$ SELECT 2 $fn$;")
        let log = try await withPostgresClient(url, logger: logger) { db in
            var log: [String] = []
            log.append("\(try await Migrator(migrations: [], functions: [a, b]).apply(client: db, logger: logger).functions)")
            // kb_b's file goes, and a numbered migration drops the function.
            _ = try await db.query("DROP FUNCTION kb_b")
            log.append("\(try await Migrator(migrations: [], functions: [a]).apply(client: db, logger: logger).functions)")
            var recorded: [String] = []
            for try await n in try await db.query("SELECT name FROM schema_functions ORDER BY name").decode(String.self) { recorded.append(n) }
            log.append("\(recorded)")
            log.append("\(try await Migrator(migrations: [], functions: [a, b]).apply(client: db, logger: logger).functions)")
            return log
        }
        XCTAssertEqual(log, ["[\"kb_a\", \"kb_b\"]", "[]", "[\"kb_a\"]", "[\"kb_b\"]"])
        try await Self.dropScratchDatabase(name)
    }

    /// Views are repeatable files too (`Migrations/views/`): applied after the functions, and again when their text
    /// changes; the repository's `spend_ledger` is one.
    func testChangedViewFileIsReapplied() async throws {
        XCTAssertTrue(try Migrator(directory: TestDatabase.migrationsDirectory).functions.contains { $0.name == "views/spend_ledger" })
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kb_views_\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory + "/views", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: directory + "/functions", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (21);".write(toFile: directory + "/0001_t.sql", atomically: true, encoding: .utf8)
        try "CREATE OR REPLACE FUNCTION kb_twice(v INTEGER) RETURNS INTEGER LANGUAGE sql AS $fn$ SELECT v * 2 $fn$;"
            .write(toFile: directory + "/functions/kb_twice.sql", atomically: true, encoding: .utf8)
        @Sendable func view(_ body: String) throws {
            try "CREATE OR REPLACE VIEW v AS \(body);".write(toFile: directory + "/views/v.sql", atomically: true, encoding: .utf8)
        }
        let (url, name) = try await Self.scratchDatabase()
        let logger = Logger(label: "test.migrate")
        let log = try await withPostgresClient(url, logger: logger) { db in
            func read() async throws -> [Int] {
                var out: [Int] = []
                for try await row in try await db.query("SELECT * FROM v") { out += try row.map { try $0.decode(Int.self) } }
                return out
            }
            var log: [String] = []
            try view("SELECT x FROM t")
            var applied = try await Migrator(directory: directory).apply(client: db, logger: logger)
            log.append("\(applied.functions) \(try await read())")
            applied = try await Migrator(directory: directory).apply(client: db, logger: logger)
            log.append("\(applied.functions) \(try await read())")
            try view("SELECT x, kb_twice(x) AS y FROM t")
            applied = try await Migrator(directory: directory).apply(client: db, logger: logger)
            log.append("\(applied.functions) \(try await read())")
            return log
        }
        XCTAssertEqual(log, ["[\"kb_twice\", \"views/v\"] [21]", "[] [21]", "[\"views/v\"] [21, 42]"])
        try await Self.dropScratchDatabase(name)
    }

    /// What a schema is made of, one line per fact, in a stable order: tables' columns (type, default, nullability),
    /// indexes, constraints, views' definitions, triggers and functions (arguments, result and body).
    static func schemaFacts(_ db: PostgresClient) async throws -> [String] {
        var facts: [String] = []
        for try await (table, column, type, def, nullable) in try await db.query("""
            SELECT table_name::text, column_name::text, data_type::text, COALESCE(column_default::text, ''), is_nullable::text
            FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2
            """).decode((String, String, String, String, String).self) {
            facts.append("column \(table).\(column) \(type) default=\(def) nullable=\(nullable)")
        }
        for try await (name, def) in try await db.query("""
            SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1
            """).decode((String, String).self) { facts.append("index \(name) \(def)") }
        for try await (table, name, def) in try await db.query("""
            SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2
            """).decode((String, String, String).self) { facts.append("constraint \(table).\(name) \(def)") }
        for try await (name, def) in try await db.query("""
            SELECT viewname::text, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1
            """).decode((String, String).self) { facts.append("view \(name) \(def)") }
        for try await (table, name, def) in try await db.query("""
            SELECT tgrelid::regclass::text, tgname::text, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2
            """).decode((String, String, String).self) { facts.append("trigger \(table).\(name) \(def)") }
        for try await (name, args, result, volatility, source) in try await db.query("""
            SELECT proname::text, pg_get_function_identity_arguments(oid), pg_get_function_result(oid), provolatile::text, prosrc
            FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1, 2
            """).decode((String, String, String, String, String).self) {
            facts.append("function \(name)(\(args)) \(result) \(volatility)\n\(source)")
        }
        return facts
    }

    /// An empty database of its own (migrations need one), on the test cluster.
    static func scratchDatabase() async throws -> (DatabaseURL, String) {
        let name = "kb_migr_\(UInt32.random(in: 0...UInt32.max))"
        try await TestDatabase.withClient { db in _ = try await db.query("CREATE DATABASE \(unescaped: name)") }
        var url = try TestDatabase.url
        url.database = name
        return (url, name)
    }

    static func dropScratchDatabase(_ name: String) async throws {
        try await TestDatabase.withClient { db in _ = try await db.query("DROP DATABASE \(unescaped: name) WITH (FORCE)") }
    }
}
