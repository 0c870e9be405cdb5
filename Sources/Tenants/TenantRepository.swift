import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

public enum Plan: String, Sendable, Codable, CaseIterable {
    case free
    case pro
}

public struct Tenant: Sendable, Equatable {
    public let id: String
    public let name: String
    public let email: String
    public let plan: Plan
    public let createdAt: Date
}

public struct AdminTokenRecord: Sendable {
    public let id: String
    public let tenantId: String
    public let label: String?
    public let createdAt: Date
    public var lastUsedAt: Date? = nil
}

/// Tenants and their admin tokens. Tokens reach this layer already hashed.
public protocol TenantRepository: Sendable {
    func createTenant(name: String, email: String, adminTokenId: String, adminTokenHash: String, logger: Logger) async throws -> Tenant
    func tenant(id: String, logger: Logger) async throws -> Tenant?
    func setPlan(tenantId: String, plan: Plan, logger: Logger) async throws -> Tenant?
    func addAdminToken(tenantId: String, id: String, hash: String, label: String?, logger: Logger) async throws -> AdminTokenRecord
    /// Active token's hash and tenant, or nil if unknown or revoked.
    func activeAdminToken(id: String, logger: Logger) async throws -> (tenantId: String, hash: String)?
    /// Revokes one of the tenant's tokens; false if the tenant has no such active token.
    func revokeAdminToken(tenantId: String, id: String, logger: Logger) async throws -> Bool
    /// The tenant's active tokens, newest first (never their hashes).
    func adminTokens(tenantId: String, logger: Logger) async throws -> [AdminTokenRecord]
    /// Revokes every active token of the tenant but `keep`; the ids revoked.
    func revokeAdminTokens(tenantId: String, except keep: String, logger: Logger) async throws -> [String]
    /// Records that the token was used now.
    func touchAdminToken(id: String, logger: Logger) async throws
    /// Proxied requests counted in the given UTC month.
    func monthlyRequests(tenantId: String, month: String, logger: Logger) async throws -> Int64
}

public struct PostgresTenantRepository: TenantRepository {
    let client: DatabasePool

    public init(client: DatabasePool) { self.client = client }

    public func createTenant(name: String, email: String, adminTokenId: String, adminTokenHash: String, logger: Logger) async throws -> Tenant {
        let id = Identifier.make("ten")
        return try await client.transaction(logger: logger) { conn in
            let rows = try await conn.query("""
                INSERT INTO tenants (id, name, email) VALUES (\(id), \(name), \(email))
                RETURNING id, name, email, plan, created_at
                """, logger: logger)
            var tenant: Tenant?
            for try await row in rows.decode((String, String, String, String, Date).self) {
                tenant = Tenant(id: row.0, name: row.1, email: row.2, plan: Plan(rawValue: row.3) ?? .free, createdAt: row.4)
            }
            try await conn.query("""
                INSERT INTO admin_tokens (id, tenant_id, label, token_hash) VALUES (\(adminTokenId), \(id), 'signup', \(adminTokenHash))
                """, logger: logger)
            guard let tenant else { throw KeybrakeError.internalError }
            return tenant
        }
    }

    public func tenant(id: String, logger: Logger) async throws -> Tenant? {
        let rows = try await client.query("SELECT id, name, email, plan, created_at FROM tenants WHERE id = \(id)", logger: logger)
        for try await row in rows.decode((String, String, String, String, Date).self) {
            return Tenant(id: row.0, name: row.1, email: row.2, plan: Plan(rawValue: row.3) ?? .free, createdAt: row.4)
        }
        return nil
    }

    public func setPlan(tenantId: String, plan: Plan, logger: Logger) async throws -> Tenant? {
        let rows = try await client.query("""
            UPDATE tenants SET plan = \(plan.rawValue) WHERE id = \(tenantId)
            RETURNING id, name, email, plan, created_at
            """, logger: logger)
        for try await row in rows.decode((String, String, String, String, Date).self) {
            return Tenant(id: row.0, name: row.1, email: row.2, plan: Plan(rawValue: row.3) ?? .free, createdAt: row.4)
        }
        return nil
    }

    public func addAdminToken(tenantId: String, id: String, hash: String, label: String?, logger: Logger) async throws -> AdminTokenRecord {
        let rows = try await client.query("""
            INSERT INTO admin_tokens (id, tenant_id, label, token_hash) VALUES (\(id), \(tenantId), \(label), \(hash))
            RETURNING created_at
            """, logger: logger)
        for try await createdAt in rows.decode(Date.self) {
            return AdminTokenRecord(id: id, tenantId: tenantId, label: label, createdAt: createdAt)
        }
        throw KeybrakeError.internalError
    }

    public func activeAdminToken(id: String, logger: Logger) async throws -> (tenantId: String, hash: String)? {
        let rows = try await client.query(
            "SELECT tenant_id, token_hash FROM admin_tokens WHERE id = \(id) AND revoked_at IS NULL", logger: logger
        )
        for try await row in rows.decode((String, String).self) { return (row.0, row.1) }
        return nil
    }

    public func revokeAdminToken(tenantId: String, id: String, logger: Logger) async throws -> Bool {
        let rows = try await client.query("""
            UPDATE admin_tokens SET revoked_at = now()
            WHERE id = \(id) AND tenant_id = \(tenantId) AND revoked_at IS NULL RETURNING id
            """, logger: logger)
        for try await _ in rows.decode(String.self) { return true }
        return false
    }

    public func adminTokens(tenantId: String, logger: Logger) async throws -> [AdminTokenRecord] {
        let rows = try await client.query("""
            SELECT id, label, created_at, last_used_at FROM admin_tokens
            WHERE tenant_id = \(tenantId) AND revoked_at IS NULL ORDER BY created_at DESC, id DESC
            """, logger: logger)
        var out: [AdminTokenRecord] = []
        for try await row in rows.decode((String, String?, Date, Date?).self) {
            out.append(AdminTokenRecord(id: row.0, tenantId: tenantId, label: row.1, createdAt: row.2, lastUsedAt: row.3))
        }
        return out
    }

    public func revokeAdminTokens(tenantId: String, except keep: String, logger: Logger) async throws -> [String] {
        let rows = try await client.query("""
            UPDATE admin_tokens SET revoked_at = now()
            WHERE tenant_id = \(tenantId) AND id <> \(keep) AND revoked_at IS NULL RETURNING id
            """, logger: logger)
        var ids: [String] = []
        for try await id in rows.decode(String.self) { ids.append(id) }
        return ids
    }

    public func touchAdminToken(id: String, logger: Logger) async throws {
        try await client.query("UPDATE admin_tokens SET last_used_at = now() WHERE id = \(id) AND revoked_at IS NULL", logger: logger)
    }

    public func monthlyRequests(tenantId: String, month: String, logger: Logger) async throws -> Int64 {
        let rows = try await client.query(
            "SELECT COALESCE(sum(requests), 0)::bigint FROM tenant_monthly_usage WHERE tenant_id = \(tenantId) AND month = \(month)::date", logger: logger
        )
        for try await n in rows.decode(Int64.self) { return n }
        return 0
    }
}
