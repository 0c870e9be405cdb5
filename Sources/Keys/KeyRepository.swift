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
    /// Applies `change` to the current policy under a row lock; nil if not found.
    func update(id: String, tenantId: String, logger: Logger,
                _ change: @Sendable (VaultKey) throws -> Policy) async throws -> VaultKey?
    func revoke(id: String, tenantId: String, logger: Logger) async throws -> VaultKey?
}

public struct PostgresKeyRepository: KeyRepository {
    let client: PostgresClient

    public init(client: PostgresClient) { self.client = client }

    static let columns = """
        id, tenant_id, vendor, label, status, allowed_endpoints, daily_cap_micros, monthly_cap_micros,
        max_request_micros, expires_at, rate_limit_per_minute, auto_idempotency, duplicate_window_seconds,
        timezone, allowed_stripe_accounts, created_at, updated_at, revoked_at
        """

    typealias Row = (String, String, String, String, String, [String], Int64?, Int64?, Int64?, Date?, Int?, Bool, Int,
                     String, [String], Date, Date, Date?)

    static func decode(_ rows: PostgresRowSequence) async throws -> [VaultKey] {
        var keys: [VaultKey] = []
        for try await row in rows { keys.append(makeKey(try row.decode(Row.self))) }
        return keys
    }

    static func makeKey(_ r: Row) -> VaultKey {
            let policy = Policy(
                vendor: Vendor(rawValue: r.2) ?? .stripe, label: r.3, allowedEndpoints: r.5,
                dailyCap: r.6.map(MicroUSD.init), monthlyCap: r.7.map(MicroUSD.init), maxRequest: r.8.map(MicroUSD.init),
                expiresAt: r.9, rateLimitPerMinute: r.10, autoIdempotency: r.11, duplicateWindowSeconds: r.12,
                timezone: r.13, allowedStripeAccounts: r.14
            )
            return VaultKey(id: r.0, tenantId: r.1, status: VaultKey.Status(rawValue: r.4) ?? .revoked, policy: policy,
                            createdAt: r.15, updatedAt: r.16, revokedAt: r.17)
    }

    public func create(id: String, tenantId: String, tokenHash: String, policy p: Policy, logger: Logger) async throws -> VaultKey {
        let rows = try await client.query("""
            INSERT INTO vault_keys (id, tenant_id, vendor, label, token_hash, allowed_endpoints, daily_cap_micros,
                monthly_cap_micros, max_request_micros, expires_at, rate_limit_per_minute, auto_idempotency,
                duplicate_window_seconds, timezone, allowed_stripe_accounts)
            VALUES (\(id), \(tenantId), \(p.vendor.rawValue), \(p.label), \(tokenHash), \(p.allowedEndpoints),
                \(p.dailyCap?.micros), \(p.monthlyCap?.micros), \(p.maxRequest?.micros), \(p.expiresAt),
                \(p.rateLimitPerMinute), \(p.autoIdempotency), \(p.duplicateWindowSeconds), \(p.timezone),
                \(p.allowedStripeAccounts))
            RETURNING \(unescaped: Self.columns)
            """, logger: logger)
        guard let key = try await Self.decode(rows).first else { throw KeybrakeError.internalError }
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
            let rows = try await client.query("""
                SELECT \(unescaped: Self.columns) FROM vault_keys WHERE tenant_id = \(tenantId)
                ORDER BY created_at DESC, id DESC LIMIT \(limit)
                """, logger: logger)
            return try await Self.decode(rows)
        }
        // Keyset on (created_at, id), positioned by the cursor key, which must be the tenant's own.
        let rows = try await client.query("""
            SELECT \(unescaped: Self.columns) FROM vault_keys
            WHERE tenant_id = \(tenantId)
              AND (created_at, id) < (SELECT created_at, id FROM vault_keys WHERE id = \(after) AND tenant_id = \(tenantId))
            ORDER BY created_at DESC, id DESC LIMIT \(limit)
            """, logger: logger)
        let keys = try await Self.decode(rows)
        if keys.isEmpty {
            // Tell "end of the list" from "a cursor that is not this tenant's".
            let check = try await client.query("SELECT 1 FROM vault_keys WHERE id = \(after) AND tenant_id = \(tenantId)", logger: logger)
            for try await _ in check { return [] }
            return nil
        }
        return keys
    }

    public func update(id: String, tenantId: String, logger: Logger,
                       _ change: @Sendable (VaultKey) throws -> Policy) async throws -> VaultKey? {
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
                    allowed_stripe_accounts = \(p.allowedStripeAccounts), updated_at = now()
                WHERE id = \(id) AND tenant_id = \(tenantId)
                RETURNING \(unescaped: Self.columns)
                """, logger: logger)
            return try await Self.decode(rows).first
        }
    }

    public func revoke(id: String, tenantId: String, logger: Logger) async throws -> VaultKey? {
        // Idempotent: revoking a revoked key keeps its first revoked_at.
        let rows = try await client.query("""
            UPDATE vault_keys SET status = 'revoked', revoked_at = COALESCE(revoked_at, now()), updated_at = now()
            WHERE id = \(id) AND tenant_id = \(tenantId)
            RETURNING \(unescaped: Self.columns)
            """, logger: logger)
        return try await Self.decode(rows).first
    }
}
