import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// Spend over time from the ledger (DESIGN §14): per hour or per day, settled, still reserved and outcome unknown,
/// exact to the micro-dollar. A key's series includes its child keys (their spend is the key's too); grouped by key
/// or label, a child's spend counts under its root key, as in GET /v1/spend. Days are each key's own calendar day
/// (the day its daily cap counts); hours are in the key's time zone for one key's series, UTC for the tenant's.
/// Read through the reservations' (key, day) index, so the window is bounded (`SpendSeriesQuery.maxBuckets`).
public struct SpendSeriesRepository: Sendable {
    let reads: AdminReads

    public init(reads: AdminReads) { self.reads = reads }
    /// Through the same admin read pool as the other spend reads.
    public init(spend: SpendRepository) { self.reads = spend.reads }

    public enum Granularity: String, Sendable { case hour, day }
    public enum Grouping: String, Sendable { case none, key, label, vendor }

    public struct Row: Sendable, Equatable {
        public var bucket: String
        public var group: String
        public var settled: MicroUSD
        public var reserved: MicroUSD
        public var unknown: MicroUSD
        public var spent: MicroUSD { settled + reserved + unknown }
    }

    /// The key's time zone, or nil when the key is not the tenant's.
    public func timezone(keyId: String, tenantId: String, logger: Logger) async throws -> String? {
        let rows = try await reads.rows("SELECT timezone FROM vault_keys WHERE id = \(keyId) AND tenant_id = \(tenantId)",
                                        tenantId: tenantId, logger: logger)
        return try rows.decode(String.self).first
    }

    /// Rows for [from, to): `fromDay`/`toDay` bound the days read (the index), `from`/`to` the hours.
    public func series(tenantId: String, keyId: String?, granularity: Granularity, grouping: Grouping, timezone: String,
                       from: Date, to: Date, fromDay: String, toDay: String, logger: Logger) async throws -> [Row] {
        let bucket = granularity == .day
            ? "to_char(r.day, 'YYYY-MM-DD')"
            : "to_char(date_trunc('hour', r.created_at AT TIME ZONE $3), 'YYYY-MM-DD\"T\"HH24:00')"
        let group = switch grouping {
        case .none: "''"
        case .key: "root.id"
        case .label: "root.label"
        case .vendor: "root.vendor"
        }
        var query = PostgresQuery(unsafeSQL: """
            SELECT \(bucket) AS bucket, \(group) AS grp,
                   COALESCE(sum(r.settled_micros) FILTER (WHERE r.state = 'settled'), 0)::bigint,
                   COALESCE(sum(r.amount_micros) FILTER (WHERE r.state = 'held'), 0)::bigint,
                   COALESCE(sum(r.amount_micros) FILTER (WHERE r.state = 'unknown'), 0)::bigint
            FROM vault_keys k
            JOIN vault_keys root ON root.id = COALESCE(k.ancestor_ids[1], k.id)
            JOIN reservations r ON r.key_id = k.id AND r.day >= $4::date AND r.day < $5::date
            WHERE k.tenant_id = $1 AND ($2::text IS NULL OR k.id = $2 OR k.ancestor_ids @> ARRAY[$2::text])
              AND r.state IN ('settled', 'held', 'unknown')
              AND ($6 = 'day' OR (r.created_at >= $7 AND r.created_at < $8))
            GROUP BY 1, 2 ORDER BY 1, 2
            """)
        query.binds.append(tenantId)
        query.binds.append(keyId)
        query.binds.append(timezone)
        query.binds.append(fromDay)
        query.binds.append(toDay)
        query.binds.append(granularity.rawValue)
        query.binds.append(from)
        query.binds.append(to)
        let rows = try await reads.rows(query, tenantId: tenantId, logger: logger)
        return try rows.decode((String, String, Int64, Int64, Int64).self).map {
            Row(bucket: $0.0, group: $0.1, settled: MicroUSD($0.2), reserved: MicroUSD($0.3), unknown: MicroUSD($0.4))
        }
    }
}
