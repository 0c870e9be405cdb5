import Foundation
import HTTPTypes
import HummingbirdTesting
import KeybrakeServer
import Logging
import PostgresNIO
import XCTest

/// A request's audit row is written before it is forwarded and completed when the vendor answers. That completion must
/// be a HOT update (the new row version on the same page, no index touched): an index on a column the completion
/// changes makes every request write an entry into every audit index a second time (Migrations/0014).
final class AuditRowCompletionTests: XCTestCase {
    /// How the current version of each row was written: `inserted` (never updated), `hot` (by a HOT update) or
    /// `moved` (by an update that wrote new index entries), read with pageinspect (HEAP_UPDATED, HEAP_ONLY_TUPLE).
    enum Written: String { case inserted, hot, moved }

    static func written(_ ids: [String]) async throws -> [Written] {
        try await TestDatabase.withClient { db in
            let logger = Logger(label: "test.hot")
            try await db.query("CREATE EXTENSION IF NOT EXISTS pageinspect", logger: logger)
            var out: [Written] = []
            for id in ids {
                var place: (String, Int, Int)?
                for try await row in try await db.query("""
                    SELECT tableoid::regclass::text, (ctid::text::point)[0]::int, (ctid::text::point)[1]::int
                    FROM audit_events WHERE id = \(id)
                    """, logger: logger).decode((String, Int, Int).self) { place = row }
                guard let (relation, block, item) = place else { XCTFail("no audit row \(id)"); continue }
                for try await (updated, heapOnly) in try await db.query("""
                    SELECT (t_infomask & 8192) <> 0, (t_infomask2 & 32768) <> 0
                    FROM heap_page_items(get_raw_page(\(relation), \(block))) WHERE lp = \(item)
                    """, logger: logger).decode((Bool, Bool).self) {
                    out.append(!updated ? .inserted : heapOnly ? .hot : .moved)
                }
            }
            return out
        }
    }

    static func completedRows(_ keyId: String, count: Int) async throws -> [String] {
        for _ in 0..<100 {
            let ids = try await TestDatabase.withClient { db in
                var ids: [String] = []
                for try await id in try await db.query(
                    "SELECT id FROM audit_events WHERE key_id = \(keyId) AND error_code IS NULL AND upstream_status = 200",
                    logger: Logger(label: "test.hot")
                ).decode(String.self) { ids.append(id) }
                return ids
            }
            if ids.count >= count { return ids }
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTFail("the rows were not completed")
        return []
    }

    func testCompletingTheRowOfARequestThatWentAsExpectedTouchesNoIndex() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(t, ["daily_usd_cap": 100, "allowed_endpoints": ["POST /v1/charges", "GET /v1/charges/*"]])
            var charge = ""
            for cents in 100..<104 {   // four different charges (the same body twice would be a duplicate, replayed)
                let r = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "\(cents)"), ("currency", "usd")])
                expectStatus(r, .ok)
                charge = r.json["id"] as? String ?? ""
            }
            for _ in 0..<4 { expectStatus(try await client.proxy(.get, "/stripe/v1/charges/\(charge)", key: token), .ok) }
            let ids = try await Self.completedRows(keyId, count: 8)
            let written = try await Self.written(ids)
            // Each row is written before its request is forwarded (a charge's when it reserves, a GET's while it is
            // upstream) and completed after.
            XCTAssertGreaterThanOrEqual(written.filter { $0 != .inserted }.count, 7, "\(written)")
            // A page filled up by the row's own insert leaves no room beside it, so one completion may still have to
            // move; an indexed error_code, status or outcome makes every completion move.
            XCTAssertLessThanOrEqual(written.filter { $0 == .moved }.count, 1, "completions that wrote index entries: \(written)")
        }
    }
}
