import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// Vault keys in Postgres. Every query is scoped by tenant: another tenant's id simply is not found.
public protocol KeyRepository: Sendable {
    func create(id: String, tenantId: String, tokenHash: String, policy: Policy, logger: Logger) async throws -> VaultKey
    func key(id: String, tenantId: String, logger: Logger) async throws -> VaultKey?
    /// Newest first; `after` is the id of the last key of the previous page.
    func list(tenantId: String, after: String?, limit: Int, logger: Logger) async throws -> [VaultKey]?
    /// Applies `change` to the current policy under a row lock; nil if not found. `change` is the key change's
    /// sequence number (kb_key_changed), which replicas acknowledge.
    func update(id: String, tenantId: String, logger: Logger,
                _ change: @Sendable (VaultKey) throws -> Policy) async throws -> (key: VaultKey, change: Int64)?
    /// Revokes the key and every descendant (one transaction, one key change); nil if not found.
    func revoke(id: String, tenantId: String, logger: Logger) async throws -> (key: VaultKey, change: Int64)?
    /// Mints a child of `parentId` under the parent's row lock, which serialises the fan-out count.
    func createChild(id: String, parentId: String, tenantId: String, tokenHash: String, runId: String?, limits: ChildLimits,
                     logger: Logger, _ policy: @Sendable (VaultKey) throws -> Policy) async throws -> VaultKey
    /// A key's direct children, newest first, each with what it has counted in its life (settled + held + unknown).
    func children(of id: String, tenantId: String, after: String?, limit: Int, logger: Logger) async throws -> [(VaultKey, MicroUSD)]?
    /// How many children a key has, how many are active, and what they have counted in their lives.
    func childSummary(of id: String, tenantId: String, logger: Logger) async throws -> ChildSummary
}

public struct ChildSummary: Sendable, Equatable {
    public var count: Int
    public var active: Int
    public var counted: MicroUSD
    public init(count: Int = 0, active: Int = 0, counted: MicroUSD = .zero) {
        self.count = count
        self.active = active
        self.counted = counted
    }
}

public struct PostgresKeyRepository: KeyRepository {
    let client: DatabasePool
    /// Key lists (`GET /v1/keys`, the dashboard's keys page) run here: the admin pool (DESIGN §16).
    let reads: AdminReads
    /// Active root keys a tenant may hold (`KEYBRAKE_MAX_KEYS_PER_TENANT`; children are bounded per parent).
    let maxRootKeys: Int

    public init(client: DatabasePool, reads: AdminReads? = nil, maxRootKeys: Int = 10_000) {
        self.client = client
        self.reads = reads ?? AdminReads(client: client)
        self.maxRootKeys = maxRootKeys
    }

    static func tooManyKeys(_ limit: Int) -> KeybrakeError {
        KeybrakeError(status: 422, code: .tenantLimitReached,
                      message: "This tenant holds \(limit) active vault keys, the most it may. Revoke keys it no longer uses (GET /v1/keys lists them) first.")
    }

    static let columns = """
        id, tenant_id, vendor, label, status, allowed_endpoints, daily_cap_micros, monthly_cap_micros,
        max_request_micros, expires_at, rate_limit_per_minute, auto_idempotency, duplicate_window_seconds,
        timezone, allowed_stripe_accounts, created_at, updated_at, revoked_at, total_cap_micros, ancestor_ids, run_id, alert_thresholds
        """
    /// Number of cells `columns` reads; a query may select more after them.
    static let columnCount = 22

    static func decode(_ rows: PostgresRowSequence) async throws -> [VaultKey] {
        var keys: [VaultKey] = []
        for try await row in rows { keys.append(try makeKey(row)) }
        return keys
    }

    static func decode(_ rows: [PostgresRow]) throws -> [VaultKey] { try rows.map(makeKey) }

    /// The key in the first `columnCount` cells of `row`.
    static func makeKey(_ row: PostgresRow) throws -> VaultKey {
        var cells = row.makeIterator()
        func next<T: PostgresDecodable>(_: T.Type = T.self) throws -> T {
            guard let cell = cells.next() else { throw KeybrakeError.internalError }
            return try cell.decode(T.self)
        }
        let id: String = try next(), tenantId: String = try next(), vendor: String = try next(), label: String = try next()
        let status: String = try next(), endpoints: [String] = try next()
        let daily: Int64? = try next(), monthly: Int64? = try next(), maxRequest: Int64? = try next()
        let expiresAt: Date? = try next(), rate: Int? = try next(), autoIdempotency: Bool = try next(), window: Int = try next()
        let timezone: String = try next(), accounts: [String] = try next()
        let createdAt: Date = try next(), updatedAt: Date = try next(), revokedAt: Date? = try next()
        let total: Int64? = try next(), ancestors: [String] = try next(), runId: String? = try next()
        let thresholds: [Int16]? = try next()
        let policy = Policy(
            vendor: Vendor(rawValue: vendor) ?? .stripe, label: label, allowedEndpoints: endpoints,
            dailyCap: daily.map(MicroUSD.init), monthlyCap: monthly.map(MicroUSD.init), maxRequest: maxRequest.map(MicroUSD.init),
            totalCap: total.map(MicroUSD.init), expiresAt: expiresAt, rateLimitPerMinute: rate, autoIdempotency: autoIdempotency,
            duplicateWindowSeconds: window, timezone: timezone, allowedStripeAccounts: accounts,
            alertThresholds: thresholds.map { $0.map(Int.init) }
        )
        return VaultKey(id: id, tenantId: tenantId, status: VaultKey.Status(rawValue: status) ?? .revoked, policy: policy,
                        createdAt: createdAt, updatedAt: updatedAt, revokedAt: revokedAt, ancestorIds: ancestors, runId: runId)
    }

    public func create(id: String, tenantId: String, tokenHash: String, policy p: Policy, logger: Logger) async throws -> VaultKey {
        let rows = try await client.query("""
            INSERT INTO vault_keys (id, tenant_id, vendor, label, token_hash, allowed_endpoints, daily_cap_micros,
                monthly_cap_micros, max_request_micros, expires_at, rate_limit_per_minute, auto_idempotency,
                duplicate_window_seconds, timezone, allowed_stripe_accounts, total_cap_micros, alert_thresholds)
            SELECT \(id), \(tenantId), \(p.vendor.rawValue), \(p.label), \(tokenHash), \(p.allowedEndpoints),
                \(p.dailyCap?.micros), \(p.monthlyCap?.micros), \(p.maxRequest?.micros), \(p.expiresAt),
                \(p.rateLimitPerMinute), \(p.autoIdempotency), \(p.duplicateWindowSeconds), \(p.timezone),
                \(p.allowedStripeAccounts), \(p.totalCap?.micros), \(Self.thresholds(p))
            WHERE (SELECT count(*) FROM vault_keys
                   WHERE tenant_id = \(tenantId) AND parent_key_id IS NULL AND status = 'active') < \(maxRootKeys)
            RETURNING \(unescaped: Self.columns)
            """, logger: logger)
        // No row: the tenant is at its total (the count and the insert are one statement).
        guard let key = try await Self.decode(rows).first else { throw Self.tooManyKeys(maxRootKeys) }
        return key
    }

    public func key(id: String, tenantId: String, logger: Logger) async throws -> VaultKey? {
        let rows = try await client.query(
            "SELECT \(unescaped: Self.columns) FROM vault_keys WHERE id = \(id) AND tenant_id = \(tenantId)", logger: logger
        )
        return try await Self.decode(rows).first
    }

    public func list(tenantId: String, after: String?, limit: Int, logger: Logger) async throws -> [VaultKey]? {
        guard let after else {
            let rows = try await reads.rows("""
                SELECT \(unescaped: Self.columns) FROM vault_keys WHERE tenant_id = \(tenantId) AND parent_key_id IS NULL
                ORDER BY created_at DESC, id DESC LIMIT \(limit)
                """, tenantId: tenantId, logger: logger)
            return try Self.decode(rows)
        }
        // Keyset on (created_at, id), positioned by the cursor key, which must be the tenant's own.
        let rows = try await reads.rows("""
            SELECT \(unescaped: Self.columns) FROM vault_keys
            WHERE tenant_id = \(tenantId) AND parent_key_id IS NULL
              AND (created_at, id) < (SELECT created_at, id FROM vault_keys WHERE id = \(after) AND tenant_id = \(tenantId))
            ORDER BY created_at DESC, id DESC LIMIT \(limit)
            """, tenantId: tenantId, logger: logger)
        let keys = try Self.decode(rows)
        if keys.isEmpty {
            // Tell "end of the list" from "a cursor that is not this tenant's".
            let check = try await client.query("SELECT 1 FROM vault_keys WHERE id = \(after) AND tenant_id = \(tenantId)", logger: logger)
            for try await _ in check { return [] }
            return nil
        }
        return keys
    }

    public func update(id: String, tenantId: String, logger: Logger,
                       _ change: @Sendable (VaultKey) throws -> Policy) async throws -> (key: VaultKey, change: Int64)? {
        try await client.transaction(logger: logger) { conn in
            let current = try await Self.decode(try await conn.query(
                "SELECT \(unescaped: Self.columns) FROM vault_keys WHERE id = \(id) AND tenant_id = \(tenantId) FOR UPDATE",
                logger: logger
            )).first
            guard let current else { return nil }
            let p = try change(current)
            let rows = try await conn.query("""
                UPDATE vault_keys SET label = \(p.label), allowed_endpoints = \(p.allowedEndpoints),
                    daily_cap_micros = \(p.dailyCap?.micros), monthly_cap_micros = \(p.monthlyCap?.micros),
                    max_request_micros = \(p.maxRequest?.micros), expires_at = \(p.expiresAt),
                    rate_limit_per_minute = \(p.rateLimitPerMinute), auto_idempotency = \(p.autoIdempotency),
                    duplicate_window_seconds = \(p.duplicateWindowSeconds), timezone = \(p.timezone),
                    allowed_stripe_accounts = \(p.allowedStripeAccounts), total_cap_micros = \(p.totalCap?.micros),
                    alert_thresholds = \(Self.thresholds(p)), updated_at = now()
                WHERE id = \(id) AND tenant_id = \(tenantId)
                RETURNING \(unescaped: Self.columns)
                """, logger: logger)
            guard let key = try await Self.decode(rows).first else { return nil }
            // Its descendants carry it in their chain: replicas forget them too (KeyDirectory.invalidate).
            return (key, try await Self.announce(conn, tenantId: tenantId, keyIds: [id], logger: logger))
        }
    }

    /// Records a key change in the caller's transaction (NOTIFY at commit); its sequence number.
    static func announce(_ conn: PostgresConnection, tenantId: String, keyIds: [String], logger: Logger) async throws -> Int64 {
        for try await seq in try await conn.query("SELECT kb_key_changed(\(tenantId), \(keyIds))", logger: logger).decode(Int64.self) {
            return seq
        }
        throw KeybrakeError.internalError
    }

    public func revoke(id: String, tenantId: String, logger: Logger) async throws -> (key: VaultKey, change: Int64)? {
        // Descendants are revoked in the same statement (their requests check the chain anyway; this makes their
        // status say so). Only keys still active change: revoking a revoked key rewrites nothing and announces
        // nothing (an announcement takes the lock every tenant's key changes share), and answers with the change
        // that revoked it, which the caller may wait for again.
        try await client.transaction(logger: logger) { conn in
            let keys = try await Self.decode(try await conn.query("""
                UPDATE vault_keys SET status = 'revoked', revoked_at = now(), updated_at = now()
                WHERE tenant_id = \(tenantId) AND status <> 'revoked'
                  AND (id = \(id) OR (parent_key_id IS NOT NULL AND ancestor_ids @> ARRAY[\(id)]))
                RETURNING \(unescaped: Self.columns)
                """, logger: logger))
            func current() async throws -> VaultKey? {
                try await Self.decode(try await conn.query(
                    "SELECT \(unescaped: Self.columns) FROM vault_keys WHERE id = \(id) AND tenant_id = \(tenantId)", logger: logger)).first
            }
            if !keys.isEmpty {
                // The `key.revoked` event commits with the revocation (DESIGN §14): one, for the key asked for.
                if keys.contains(where: { $0.id == id }) {
                    let descendants = keys.count - 1
                    try await conn.query("""
                        SELECT kb_emit_event(\(tenantId), 'key.revoked', \(id),
                            kb_key_event_data(\(id)) || jsonb_build_object('descendants_revoked', \(descendants)::int))
                        """, logger: logger)
                }
                let change = try await Self.announce(conn, tenantId: tenantId, keyIds: keys.map(\.id), logger: logger)
                if let key = keys.first(where: { $0.id == id }) { return (key, change) }
                return try await current().map { ($0, change) }
            }
            guard let key = try await current() else { return nil }
            var change: Int64 = 0
            for try await seq in try await conn.query(
                "SELECT COALESCE(max(seq), 0) FROM key_changes WHERE tenant_id = \(tenantId) AND key_ids @> ARRAY[\(id)]", logger: logger
            ).decode(Int64.self) { change = seq }
            return (key, change)
        }
    }

    public func createChild(id: String, parentId: String, tenantId: String, tokenHash: String, runId: String?, limits: ChildLimits,
                            logger: Logger, _ makePolicy: @Sendable (VaultKey) throws -> Policy) async throws -> VaultKey {
        try await client.transaction(logger: logger) { conn in
            guard let parent = try await Self.decode(try await conn.query(
                "SELECT \(unescaped: Self.columns) FROM vault_keys WHERE id = \(parentId) AND tenant_id = \(tenantId) FOR UPDATE",
                logger: logger
            )).first else { throw KeybrakeError.notFound("key") }
            // The parent's ancestors must all still be usable: a revoked grandparent stops the parent too.
            let chain = parent.ancestorIds
            if !chain.isEmpty {
                let dead = try await conn.query("""
                    SELECT id FROM vault_keys WHERE id = ANY(\(chain)) AND (status <> 'active' OR expires_at <= now()) LIMIT 1
                    """, logger: logger)
                for try await deadId in dead.decode(String.self) {
                    throw KeybrakeError(status: 403, code: .parentKeyInactive,
                        message: "This key's ancestor \(deadId) is revoked or expired; it cannot mint child keys.")
                }
            }
            guard parent.depth < limits.maxDepth else {
                throw KeybrakeError(status: 403, code: .childKeyDepthExceeded,
                    message: "Key \(parent.id) is \(parent.depth) levels below its root; child keys may nest at most \(limits.maxDepth) levels deep.")
            }
            var count = 0
            for try await n in try await conn.query(
                "SELECT count(*)::int FROM vault_keys WHERE parent_key_id = \(parentId)", logger: logger
            ).decode(Int.self) { count = n }
            guard count < limits.maxChildren else {
                throw KeybrakeError(status: 403, code: .childKeyLimitReached,
                    message: "Key \(parent.id) already has \(count) child keys, the most one key may have (\(limits.maxChildren)). Revoked and expired children count too: mint from a fresh parent key.")
            }
            let p = try makePolicy(parent)
            let ancestors = parent.ancestorIds + [parent.id]
            let rows = try await conn.query("""
                INSERT INTO vault_keys (id, tenant_id, vendor, label, token_hash, allowed_endpoints, daily_cap_micros,
                    monthly_cap_micros, max_request_micros, expires_at, rate_limit_per_minute, auto_idempotency,
                    duplicate_window_seconds, timezone, allowed_stripe_accounts, total_cap_micros, parent_key_id, ancestor_ids, run_id,
                    alert_thresholds)
                VALUES (\(id), \(tenantId), \(p.vendor.rawValue), \(p.label), \(tokenHash), \(p.allowedEndpoints),
                    \(p.dailyCap?.micros), \(p.monthlyCap?.micros), \(p.maxRequest?.micros), \(p.expiresAt),
                    \(p.rateLimitPerMinute), \(p.autoIdempotency), \(p.duplicateWindowSeconds), \(p.timezone),
                    \(p.allowedStripeAccounts), \(p.totalCap?.micros), \(parent.id), \(ancestors), \(runId), \(Self.thresholds(p)))
                RETURNING \(unescaped: Self.columns)
                """, logger: logger)
            guard let key = try await Self.decode(rows).first else { throw KeybrakeError.internalError }
            return key
        }
    }

    public func children(of id: String, tenantId: String, after: String?, limit: Int, logger: Logger) async throws -> [(VaultKey, MicroUSD)]? {
        var out: [(VaultKey, MicroUSD)] = []
        let rows: PostgresRowSequence
        if let after {
            rows = try await client.query("""
                SELECT \(unescaped: Self.qualified("k")), COALESCE(c.counted_micros, 0)
                FROM vault_keys k
                LEFT JOIN spend_counters c ON c.key_id = k.id AND c.period = 'total' AND c.period_start = DATE '1970-01-01'
                WHERE k.tenant_id = \(tenantId) AND k.parent_key_id = \(id)
                  AND (k.created_at, k.id) < (SELECT created_at, id FROM vault_keys WHERE id = \(after) AND tenant_id = \(tenantId) AND parent_key_id = \(id))
                ORDER BY k.created_at DESC, k.id DESC LIMIT \(limit)
                """, logger: logger)
        } else {
            rows = try await client.query("""
                SELECT \(unescaped: Self.qualified("k")), COALESCE(c.counted_micros, 0)
                FROM vault_keys k
                LEFT JOIN spend_counters c ON c.key_id = k.id AND c.period = 'total' AND c.period_start = DATE '1970-01-01'
                WHERE k.tenant_id = \(tenantId) AND k.parent_key_id = \(id)
                ORDER BY k.created_at DESC, k.id DESC LIMIT \(limit)
                """, logger: logger)
        }
        for try await row in rows {
            let key = try Self.makeKey(row)
            var cells = row.makeIterator()
            for _ in 0..<Self.columnCount { _ = cells.next() }
            guard let cell = cells.next() else { throw KeybrakeError.internalError }
            out.append((key, MicroUSD(try cell.decode(Int64.self))))
        }
        if out.isEmpty, let after {
            let check = try await client.query(
                "SELECT 1 FROM vault_keys WHERE id = \(after) AND tenant_id = \(tenantId) AND parent_key_id = \(id)", logger: logger)
            for try await _ in check { return [] }
            return nil
        }
        return out
    }

    public func childSummary(of id: String, tenantId: String, logger: Logger) async throws -> ChildSummary {
        let rows = try await client.query("""
            SELECT count(*)::int, (count(*) FILTER (WHERE k.status = 'active' AND (k.expires_at IS NULL OR k.expires_at > now())))::int,
                   COALESCE(sum(c.counted_micros), 0)::bigint
            FROM vault_keys k
            LEFT JOIN spend_counters c ON c.key_id = k.id AND c.period = 'total' AND c.period_start = DATE '1970-01-01'
            WHERE k.tenant_id = \(tenantId) AND k.parent_key_id = \(id)
            """, logger: logger)
        for try await (count, active, counted) in rows.decode((Int, Int, Int64).self) {
            return ChildSummary(count: count, active: active, counted: MicroUSD(counted))
        }
        return ChildSummary()
    }

    /// The policy's alert thresholds as the column stores them (NULL: the default).
    static func thresholds(_ p: Policy) -> [Int16]? { p.alertThresholds.map { $0.sorted().map(Int16.init) } }

    /// `columns` with every name prefixed by a table alias.
    static func qualified(_ alias: String) -> String {
        columns.split(separator: ",").map { "\(alias).\($0.trimmingCharacters(in: .whitespacesAndNewlines))" }.joined(separator: ", ")
    }
}
