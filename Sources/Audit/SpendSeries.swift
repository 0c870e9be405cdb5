import Foundation
import KeybrakeCore
import Logging
import PostgresNIO

/// Spend over time (DESIGN §14): the ledger's reservations summed per bucket and group, exact in micro-USD, with
/// what is settled, still held and of unknown outcome kept apart (released amounts moved nothing and are left out).
/// Buckets are in each key's own time zone: a day is the reservation's `day` (the day its cap counted it in), an hour
/// is the reservation's creation time truncated to the hour, in the key's zone. A child key's spend belongs to its
/// root key (group `key`, `label`), as on the overview.
public struct SpendSeries: Sendable, Equatable {
    public enum Granularity: String, Sendable { case hour, day }
    public enum GroupBy: String, Sendable { case key, label, vendor }

    public struct Point: Sendable, Equatable {
        public var bucket: String
        public var group: String
        /// The root key's label for group `key`; the group itself otherwise.
        public var label: String
        public var settled: MicroUSD
        public var held: MicroUSD
        public var unknown: MicroUSD
        public var spent: MicroUSD { settled + held + unknown }
    }

    /// Longest window per granularity (a bounded scan, DESIGN §16).
    public static func maxDays(_ g: Granularity) -> Int { g == .hour ? 31 : 366 }
}

extension SpendRepository {
    /// Days `from`…`to` (inclusive, YYYY-MM-DD, each key's own calendar), optionally one key and its subtree.
    public func series(tenantId: String, granularity: SpendSeries.Granularity, from: String, to: String, keyId: String?,
                       groupBy: SpendSeries.GroupBy, logger: Logger) async throws -> [SpendSeries.Point] {
        let bucket = granularity == .day
            ? "to_char(r.day, 'YYYY-MM-DD')"
            : "to_char(date_trunc('hour', r.created_at AT TIME ZONE k.timezone), 'YYYY-MM-DD\"T\"HH24:00')"
        let group: String
        switch groupBy {
        case .key: group = "COALESCE(k.ancestor_ids[1], k.id)"
        case .label: group = "COALESCE(root.label, k.label)"
        case .vendor: group = "k.vendor"
        }
        let rows = try await reads.rows("""
            SELECT \(unescaped: bucket) AS bucket, \(unescaped: group) AS grp, min(COALESCE(root.label, k.label)),
                   COALESCE(sum(r.settled_micros) FILTER (WHERE r.state = 'settled'), 0)::BIGINT,
                   COALESCE(sum(r.amount_micros) FILTER (WHERE r.state = 'held'), 0)::BIGINT,
                   COALESCE(sum(r.amount_micros) FILTER (WHERE r.state = 'unknown'), 0)::BIGINT
            FROM vault_keys k
            LEFT JOIN vault_keys root ON root.id = k.ancestor_ids[1]
            JOIN reservations r ON r.key_id = k.id AND r.day BETWEEN \(from)::date AND \(to)::date AND r.state <> 'released'
            WHERE k.tenant_id = \(tenantId)
              AND (\(keyId)::TEXT IS NULL OR k.id = \(keyId) OR k.ancestor_ids @> ARRAY[\(keyId)::TEXT])
            GROUP BY 1, 2
            ORDER BY 1, 2
            """, tenantId: tenantId, logger: logger)
        var out: [SpendSeries.Point] = []
        for (bucket, group, label, settled, held, unknown) in try rows.decode((String, String, String, Int64, Int64, Int64).self) {
            out.append(SpendSeries.Point(bucket: bucket, group: group, label: groupBy == .key ? label : group,
                                         settled: MicroUSD(settled), held: MicroUSD(held), unknown: MicroUSD(unknown)))
        }
        return out
    }
}

extension SpendRepository {
    public func keyExists(tenantId: String, keyId: String, logger: Logger) async throws -> Bool {
        !(try await reads.rows("SELECT 1 FROM vault_keys WHERE id = \(keyId) AND tenant_id = \(tenantId)", tenantId: tenantId, logger: logger)).isEmpty
    }
}
