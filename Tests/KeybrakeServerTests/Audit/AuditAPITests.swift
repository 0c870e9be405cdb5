import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import PostgresNIO
import Audit
import Storage
import XCTest

final class AuditAPITests: XCTestCase {
    /// Inserts `count` audit rows for a tenant straight into Postgres (fast fixture for paging and plans).
    static func seed(tenant: String, keyId: String, count: Int, minutesAgo: Int = 60, decision: String = "allowed") async throws {
        try await TestDatabase.withClient { db in
            try await db.query("""
                INSERT INTO audit_events (id, tenant_id, key_id, key_label, vendor, method, path, decision, amount_micros, created_at)
                SELECT 'aud_seed' || md5(random()::text || g::text), \(tenant), \(keyId), 'seed', 'stripe', 'GET', '/v1/customers', \(decision), 0,
                       now() - make_interval(mins => \(minutesAgo)::int) + make_interval(secs => g * 0.001)
                FROM generate_series(1, \(count)) g
                """)
        }
    }

    func testPaginationWalksEveryRowOnceWhileRowsAreInserted() async throws {
        try await TestApp.run { client in
            let (tenantId, admin) = try await client.signup()
            try await Self.seed(tenant: tenantId, keyId: "key_seed", count: 1200)
            let original = try await TestDatabase.withClient { db in
                var ids = Set<String>()
                for try await id in try await db.query("SELECT id FROM audit_events WHERE tenant_id = \(tenantId)").decode(String.self) { ids.insert(id) }
                return ids
            }
            XCTAssertEqual(original.count, 1200)
            // Writers keep adding rows while the reader pages.
            let writer = Task {
                for _ in 0..<20 {
                    try await Self.seed(tenant: tenantId, keyId: "key_seed", count: 5, minutesAgo: 0)
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let r = try await client.call(.get, "/v1/audit?limit=500&key_id=key_seed" + (cursor.map { "&cursor=\($0)" } ?? ""), token: admin)
                expectStatus(r, .ok)
                seen += (r.json["data"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                cursor = r.json["next_cursor"] as? String
                pages += 1
            } while cursor != nil && pages < 20
            try await writer.value
            XCTAssertEqual(seen.count, Set(seen).count, "no duplicates")
            XCTAssertTrue(original.isSubset(of: Set(seen)), "no gaps: every original row was seen")
            XCTAssertGreaterThanOrEqual(pages, 3)
            let limitTooBig = try await client.call(.get, "/v1/audit?limit=501", token: admin)
            XCTAssertEqual(limitTooBig.errorField, "limit")
        }
    }

    func testFiltersCombineAndTenantsAreIsolated() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyA, tokenA) = try await client.vaultKey(t, ["daily_usd_cap": 100, "allowed_endpoints": ["POST /v1/charges"]])
            let (keyB, tokenB) = try await client.vaultKey(t, ["vendor": "resend", "allowed_endpoints": ["POST /emails"]])
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: tokenA, form: [("amount", "100"), ("currency", "usd")],
                                                headers: ["X-Keybrake-Run-Id": "run-1", "Idempotency-Key": "idem-1"]), .ok)
            expectStatus(try await client.proxy(.post, "/stripe/v1/refunds", key: tokenA, form: [("charge", "ch_1")]), .forbidden)
            h.fake.setFault(.status(402))
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: tokenA, form: [("amount", "200"), ("currency", "usd")],
                                                headers: ["X-Keybrake-Run-Id": "run-2"]), .init(code: 402))
            h.fake.setFault(.none)
            expectStatus(try await client.proxy(.post, "/resend/emails", key: tokenB, json: ["to": "a@b.co", "subject": "x"]), .ok)

            func ids(_ query: String) async throws -> [String] {
                let r = try await client.call(.get, "/v1/audit?\(query)", token: t.admin)
                XCTAssertEqual(r.status, .ok, "\(query): \(r.text)")
                return (r.json["data"] as? [[String: Any]] ?? []).compactMap { $0["decision"] as? String }
            }
            let all = try await ids("")
            XCTAssertEqual(all.count, 4)
            let byKey = try await ids("key_id=\(keyA)")
            XCTAssertEqual(byKey.count, 3)
            do { let v = try await ids("key_id=\(keyB)"); XCTAssertEqual(v.count, 1) }
            do { let v = try await ids("vendor=resend"); XCTAssertEqual(v.count, 1) }
            do { let v = try await ids("decision=denied"); XCTAssertEqual(v, ["denied"]) }
            do { let v = try await ids("error_code=endpoint_not_allowed"); XCTAssertEqual(v.count, 1) }
            do { let v = try await ids("status=402"); XCTAssertEqual(v.count, 1) }
            do { let v = try await ids("status=200&vendor=stripe"); XCTAssertEqual(v.count, 1) }
            do { let v = try await ids("run_id=run-1"); XCTAssertEqual(v.count, 1) }
            do { let v = try await ids("idempotency_key=idem-1"); XCTAssertEqual(v.count, 1) }
            do { let v = try await ids("outcome=released"); XCTAssertEqual(v.count, 1) }
            do { let v = try await ids("outcome=settled&key_id=\(keyA)"); XCTAssertEqual(v.count, 1) }
            do { let v = try await ids("state=in_flight&key_id=\(keyA)"); XCTAssertEqual(v.count, 0) }
            do { let v = try await ids("state=lease_expired"); XCTAssertEqual(v.count, 0) }
            do { let v = try await ids("key_id=\(keyA)&decision=allowed"); XCTAssertEqual(v.count, 2) }
            do { let v = try await ids("from=2099-01-01T00:00:00Z"); XCTAssertEqual(v.count, 0) }
            do { let v = try await ids("to=2000-01-01T00:00:00Z"); XCTAssertEqual(v.count, 0) }
            for bad in ["decision=maybe", "state=done", "vendor=paypal", "status=abc", "from=yesterday", "run_id=a%00b", "key_id=%00"] {
                let r = try await client.call(.get, "/v1/audit?\(bad)", token: t.admin)
                XCTAssertEqual(r.status, .badRequest, bad)
            }

            // Tenant B sees nothing of A's: not by list, not by id, not through a cursor.
            let other = try await client.signup(name: "B")
            let listB = try await client.call(.get, "/v1/audit", token: other.token)
            XCTAssertEqual((listB.json["data"] as? [Any])?.count, 0)
            let firstA = try await client.call(.get, "/v1/audit?limit=1", token: t.admin)
            let idA = try XCTUnwrap((firstA.json["data"] as? [[String: Any]])?.first?["id"] as? String)
            let cursorA = try XCTUnwrap(firstA.json["next_cursor"] as? String)
            expectStatus(try await client.call(.get, "/v1/audit/\(idA)", token: other.token), .notFound)
            let tampered = try await client.call(.get, "/v1/audit?cursor=\(cursorA)", token: other.token)
            XCTAssertEqual(tampered.status, .badRequest)
            XCTAssertEqual(tampered.errorField, "cursor")
            let detail = try await client.call(.get, "/v1/audit/\(idA)", token: t.admin)
            expectStatus(detail, .ok)
            XCTAssertEqual((detail.json["event"] as? [String: Any])?["id"] as? String, idA)
        }
    }

    func testCSVExport() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1234"), ("currency", "usd")],
                                                headers: ["X-Keybrake-Run-Id": "=HYPERLINK(\"x\")"]), .ok)
            let csv = try await client.execute(uri: "/v1/audit", method: .get, headers: [.authorization: "Bearer \(t.admin)", .accept: "text/csv"])
            XCTAssertEqual(csv.status, .ok)
            XCTAssertTrue(csv.headers[.contentType]?.hasPrefix("text/csv") ?? false)
            let lines = String(buffer: csv.body).split(separator: "\r\n")
            XCTAssertEqual(lines.count, 2)
            XCTAssertTrue(lines[0].hasPrefix("id,created_at,key_id"))
            XCTAssertTrue(lines[1].contains(",12.34,1234,usd,"), String(lines[1]))
            XCTAssertTrue(lines[1].contains("\"'=HYPERLINK(\"\"x\"\")\""), "formula cells are neutralised: \(lines[1])")
        }
    }

    /// Spend equals the audit trail to the micro-dollar, per key day, with settled, released and unknown
    /// outcomes, a resolution, and two keys in time zones whose "today" differ.
    func testSpendMatchesAuditAcrossOutcomesAndTimeZones() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (utcKey, utcToken) = try await client.vaultKey(t, ["label": "billing", "daily_usd_cap": 100, "timezone": "UTC"])
            // A zone whose calendar day differs from UTC's right now (UTC+14 late in the UTC day, UTC-11 early).
            let farZone = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date()).hour! >= 10
                ? "Pacific/Kiritimati" : "Pacific/Pago_Pago"
            let (farKey, farToken) = try await client.vaultKey(t, ["label": "billing", "daily_usd_cap": 50, "timezone": farZone])
            var n = 0
            func charge(_ token: String, _ cents: Int, fault: FakeVendors.Fault = .none) async throws -> HTTPResult {
                h.fake.setFault(fault)
                n += 1
                let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "\(cents)"), ("currency", "usd"), ("description", "c\(n)")])
                h.fake.setFault(.none)
                return r
            }
            for (token, cents, fault) in [(utcToken, 1111, FakeVendors.Fault.none), (utcToken, 2222, .status(402)), (utcToken, 3333, .status(500)),
                                          (utcToken, 444, .none), (farToken, 555, .none), (farToken, 666, .status(500)), (farToken, 777, .status(402))] {
                _ = try await charge(token, cents, fault: fault)
            }
            // The tenant checks Stripe and resolves the first unknown: $20.00 of the $33.33 really moved.
            let unknown = try await client.call(.get, "/v1/audit?key_id=\(utcKey)&outcome=outcome_unknown", token: t.admin)
            let unknownId = try XCTUnwrap((unknown.json["data"] as? [[String: Any]])?.first?["id"] as? String)
            let tooMuch = try await client.call(.post, "/v1/audit/\(unknownId)/resolve", token: t.admin, json: ["outcome": "settled", "amount_usd": 40])
            XCTAssertEqual(tooMuch.errorField, "amount_usd")
            let resolved = try await client.call(.post, "/v1/audit/\(unknownId)/resolve", token: t.admin, json: ["outcome": "settled", "amount_usd": "20.00"])
            expectStatus(resolved, .created)
            XCTAssertEqual((resolved.json["event"] as? [String: Any])?["resolves"] as? String, unknownId)
            let twice = try await client.call(.post, "/v1/audit/\(unknownId)/resolve", token: t.admin, json: ["outcome": "released"])
            expectStatus(twice, .conflict, "resolved once only")
            let detail = try await client.call(.get, "/v1/audit/\(unknownId)", token: t.admin)
            XCTAssertEqual(detail.json["resolved_by"] as? String, (resolved.json["event"] as? [String: Any])?["id"] as? String)

            // Reconcile each key's day against its audit rows, through the public API only.
            for (keyId, tz) in [(utcKey, "UTC"), (farKey, farZone)] {
                var cal = Calendar(identifier: .gregorian)
                cal.timeZone = TimeZone(identifier: tz)!
                let c = cal.dateComponents([.year, .month, .day], from: Date())
                let date = String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
                let spend = try await client.call(.get, "/v1/spend?date=\(date)&group_by=key", token: t.admin)
                expectStatus(spend, .ok)
                let row = try XCTUnwrap((spend.json["data"] as? [[String: Any]])?.first { $0["key_id"] as? String == keyId })
                let events = (try await client.call(.get, "/v1/audit?key_id=\(keyId)&limit=500", token: t.admin).json["data"] as? [[String: Any]]) ?? []
                func micros(_ v: Any?) -> Int64 { Int64(((v as? Double) ?? 0) * 1_000_000 + 0.5) }
                let settled = events.filter { $0["outcome"] as? String == "settled" }.map { micros($0["amount_usd"]) }.reduce(0, +)
                let resolvedIds = Set(events.compactMap { $0["resolves"] as? String })
                let unknownLeft = events.filter { $0["outcome"] as? String == "outcome_unknown" && !resolvedIds.contains($0["id"] as? String ?? "") }
                    .map { micros($0["amount_usd"]) }.reduce(0, +)
                XCTAssertEqual(micros(row["settled_usd"]), settled, "\(tz) settled")
                XCTAssertEqual(micros(row["outcome_unknown_usd"]), unknownLeft, "\(tz) unknown")
                XCTAssertEqual(micros(row["reserved_usd"]), 0)
                XCTAssertEqual(row["timezone"] as? String, tz)
            }
            do { let v = try await Ledger.day(utcKey); XCTAssertEqual(v, .init(settled: 11_110_000 + 4_440_000 + 20_000_000, reserved: 0, unknown: 0)) }
            do { let v = try await Ledger.day(farKey); XCTAssertEqual(v, .init(settled: 5_550_000, reserved: 0, unknown: 6_660_000)) }

            // Grouped by label the two keys add up; GET /v1/keys/{id} shows the same day from the key's side.
            let today = String(ISO8601DateFormatter().string(from: Date()).prefix(10))
            let byLabel = try await client.call(.get, "/v1/spend?date=\(today)&group_by=label", token: t.admin)
            XCTAssertEqual((byLabel.json["data"] as? [[String: Any]])?.first?["keys"] as? Int, 2)
            let key = try await client.call(.get, "/v1/keys/\(utcKey)", token: t.admin)
            let todaySpend = (key.json["spend"] as? [String: Any])?["today"] as? [String: Any]
            XCTAssertEqual(todaySpend?["settled_usd"] as? Double, 35.55)
            XCTAssertEqual(todaySpend?["cap_usd"] as? Double, 100)
            XCTAssertEqual(todaySpend?["remaining_usd"] as? Double, 64.45)
            for bad in ["2026-13-01", "2026-02-30", "0000-01-01", "%2B123-01-01", "2026-1-01"] {
                expectStatus(try await client.call(.get, "/v1/spend?date=\(bad)", token: t.admin), .badRequest, bad)
            }
            expectStatus(try await client.call(.get, "/v1/spend?group_by=vendor", token: t.admin), .badRequest)
        }
    }

    func testUsageShowsMonthlyRequestsAndDailySeries() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["allowed_endpoints": ["POST /v1/customers"]])
            for i in 0..<3 { _ = try await client.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "u\(i)@x.co")]) }
            _ = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1"), ("currency", "usd")])  // denied: not counted
            let usage = try await client.call(.get, "/v1/usage", token: t.admin)
            expectStatus(usage, .ok)
            XCTAssertEqual(usage.json["requests"] as? Int, 3)
            XCTAssertEqual(usage.json["quota"] as? Int, 1000)
            XCTAssertEqual(usage.json["remaining"] as? Int, 997)
            XCTAssertEqual(usage.json["plan"] as? String, "free")
            let days = usage.json["days"] as? [[String: Any]]
            XCTAssertEqual(days?.count, 1)
            XCTAssertEqual(days?.first?["requests"] as? Int, 3)
            for bad in ["2026-99", "0000-01", "+202-01"] {
                let r = try await client.call(.get, "/v1/usage?month=\(bad)", token: t.admin)
                XCTAssertEqual(r.errorField, "month", bad)
            }
        }
    }

    /// The per-day series reads counters for closed days (0016's roll-up), not the audit rows: after a day is rolled
    /// up, deleting that day's audit rows changes nothing in the answer (mutation: with the series read from audit
    /// rows again, the second answer loses the day).
    func testUsageSeriesReadsClosedDaysFromCounters() async throws {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        let now = Date()
        guard utc.component(.day, from: now) > 1, utc.component(.hour, from: now) > 0 else {
            throw XCTSkip("needs a closed day earlier in this UTC month")
        }
        let first = utc.date(from: utc.dateComponents([.year, .month], from: now))!
        let firstDay = String(ISO8601DateFormatter().string(from: first).prefix(10))
        let today = String(ISO8601DateFormatter().string(from: now).prefix(10))
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, token) = try await client.vaultKey(t, ["allowed_endpoints": ["POST /v1/customers"]])
            for i in 0..<3 { _ = try await client.proxy(.post, "/stripe/v1/customers", key: token, form: [("email", "u\(i)@x.co")]) }
            let tenantId = t.id
            // Two of them happened on the 1st (noon UTC); that day is not rolled up yet.
            try await TestDatabase.withClient { db in
                let noon = first.addingTimeInterval(12 * 3600)
                try await db.query("""
                    UPDATE audit_events SET created_at = \(noon) WHERE id IN (
                        SELECT id FROM audit_events WHERE tenant_id = \(tenantId) AND decision = 'allowed' ORDER BY id LIMIT 2)
                    """)
                try await db.query("DELETE FROM usage_days_rolled WHERE day = \(firstDay)::date")
                try await db.query("DELETE FROM tenant_daily_usage WHERE day = \(firstDay)::date")
            }
            func series() async throws -> [String: Int] {
                let usage = try await client.call(.get, "/v1/usage", token: t.admin)
                expectStatus(usage, .ok)
                var out: [String: Int] = [:]
                for day in usage.json["days"] as? [[String: Any]] ?? [] {
                    out[day["date"] as? String ?? "?"] = day["requests"] as? Int
                }
                return out
            }
            let before = try await series()
            XCTAssertEqual(before, [firstDay: 2, today: 1], "from the audit rows, before the roll-up")
            let rolled = try await TestDatabase.withClient { db -> Int in
                var n = 0
                for try await v in try await db.query("SELECT kb_roll_up_usage(35)").decode(Int32.self) { n = Int(v) }
                return n
            }
            XCTAssertGreaterThanOrEqual(rolled, 1)
            try await TestDatabase.withClient { db in
                try await db.query("DELETE FROM audit_events WHERE tenant_id = \(tenantId) AND created_at < \(first.addingTimeInterval(86_400))")
                var again = -1
                for try await v in try await db.query("SELECT kb_roll_up_usage(35)").decode(Int32.self) { again = Int(v) }
                XCTAssertEqual(again, 0, "each day is rolled up once")
            }
            let after = try await series()
            XCTAssertEqual(after, [firstDay: 2, today: 1], "the 1st from its counter, its audit rows gone")
        }
    }

    func testListQueryUsesTheTenantIndex() async throws {
        let tenantId = try await TestApp.run { client in try await client.signup().tenantId }
        try await Self.seed(tenant: tenantId, keyId: "key_plan", count: 50_000)
        let plan = try await TestDatabase.withClient { db in
            try await db.query("ANALYZE audit_events")
            var lines: [String] = []
            for try await line in try await db.query("""
                EXPLAIN SELECT id FROM audit_events WHERE tenant_id = \(tenantId) AND key_id = 'key_plan'
                ORDER BY created_at DESC, id DESC LIMIT 500
                """).decode(String.self) { lines.append(line) }
            return lines.joined(separator: "\n")
        }
        XCTAssertTrue(plan.contains("Index Scan") || plan.contains("Index Only Scan"), plan)
        XCTAssertFalse(plan.contains("Seq Scan"), plan)
    }

    func testPruneDropsOldMonthsAsPartitions() async throws {
        let tenantId = try await TestApp.run { client in try await client.signup().tenantId }
        let old2020 = "aud_old2020" + tenantId.suffix(8), old2019 = "aud_old2019" + tenantId.suffix(8)
        try await TestDatabase.withClient { db in
            try await db.query("SELECT kb_ensure_audit_partitions('2020-01-01'::date, 0)")
            try await db.query("""
                INSERT INTO audit_events (id, tenant_id, vendor, method, path, decision, created_at)
                VALUES (\(old2020), \(tenantId), 'stripe', 'GET', '/v1/x', 'allowed', '2020-01-15T00:00:00Z'),
                       (\(old2019), \(tenantId), 'stripe', 'GET', '/v1/x', 'allowed', '2019-06-15T00:00:00Z')
                """)
        }
        try await Self.seed(tenant: tenantId, keyId: "key_keep", count: 3)
        let cutoff = try XCTUnwrap(ISO8601DateFormatter().date(from: "2020-02-01T00:00:00Z"))
        let result = try await TestDatabase.withClient { db in
            do {
                return try await AuditRepository(client: DatabasePool(fixed: db)).prune(before: cutoff, logger: Logger(label: "t"))
            } catch {
                XCTFail(String(reflecting: error))
                throw error
            }
        }
        XCTAssertEqual(result.partitions, ["audit_events_2020_01"])
        XCTAssertGreaterThanOrEqual(result.rows, 1, "the 2019 row sat in the default partition")
        let (old, kept) = try await TestDatabase.withClient { db in
            var old = -1, kept = -1
            for try await n in try await db.query("SELECT count(*) FROM audit_events WHERE id IN (\(old2020), \(old2019))").decode(Int.self) { old = n }
            for try await n in try await db.query("SELECT count(*) FROM audit_events WHERE tenant_id = \(tenantId) AND key_id = 'key_keep'").decode(Int.self) { kept = n }
            return (old, kept)
        }
        XCTAssertEqual(old, 0)
        XCTAssertEqual(kept, 3)
    }
}
