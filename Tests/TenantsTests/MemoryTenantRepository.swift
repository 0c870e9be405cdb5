import Foundation
import Logging
import NIOConcurrencyHelpers
@testable import Tenants

/// The tenant repository in memory (as the Hummingbird examples' `TodoMemoryRepository`): the controller's and the
/// authenticator's rules tested without Postgres. `touches` counts "last used" writes.
final class MemoryTenantRepository: TenantRepository {
    struct Token { var record: AdminTokenRecord; let hash: String; var revoked = false }
    struct State { var tenants: [String: Tenant] = [:]; var tokens: [String: Token] = [:]; var touches: [String: Int] = [:] }
    let state = NIOLockedValueBox(State())

    var touches: [String: Int] { state.withLockedValue { $0.touches } }

    func createTenant(name: String, email: String, adminTokenId: String, adminTokenHash: String, logger: Logger) async throws -> Tenant {
        let tenant = Tenant(id: "ten_\(UUID().uuidString.prefix(8))", name: name, email: email, plan: .free, createdAt: Date())
        state.withLockedValue {
            $0.tenants[tenant.id] = tenant
            $0.tokens[adminTokenId] = Token(record: AdminTokenRecord(id: adminTokenId, tenantId: tenant.id, label: nil, createdAt: Date()),
                                            hash: adminTokenHash)
        }
        return tenant
    }

    func tenant(id: String, logger: Logger) async throws -> Tenant? { state.withLockedValue { $0.tenants[id] } }

    func setPlan(tenantId: String, plan: Plan, logger: Logger) async throws -> Tenant? {
        state.withLockedValue { s in
            guard let t = s.tenants[tenantId] else { return nil }
            s.tenants[tenantId] = Tenant(id: t.id, name: t.name, email: t.email, plan: plan, createdAt: t.createdAt)
            return s.tenants[tenantId]
        }
    }

    func addAdminToken(tenantId: String, id: String, hash: String, label: String?, logger: Logger) async throws -> AdminTokenRecord {
        let record = AdminTokenRecord(id: id, tenantId: tenantId, label: label, createdAt: Date())
        state.withLockedValue { $0.tokens[id] = Token(record: record, hash: hash) }
        return record
    }

    func activeAdminToken(id: String, logger: Logger) async throws -> (tenantId: String, hash: String)? {
        state.withLockedValue { s in s.tokens[id].flatMap { $0.revoked ? nil : ($0.record.tenantId, $0.hash) } }
    }

    func revokeAdminToken(tenantId: String, id: String, logger: Logger) async throws -> Bool {
        state.withLockedValue { s in
            guard let t = s.tokens[id], t.record.tenantId == tenantId, !t.revoked else { return false }
            s.tokens[id]?.revoked = true
            return true
        }
    }

    func adminTokens(tenantId: String, logger: Logger) async throws -> [AdminTokenRecord] {
        state.withLockedValue { s in s.tokens.values.filter { $0.record.tenantId == tenantId && !$0.revoked }.map(\.record) }
    }

    func revokeAdminTokens(tenantId: String, except keep: String, logger: Logger) async throws -> [String] {
        state.withLockedValue { s in
            let ids = s.tokens.values.filter { $0.record.tenantId == tenantId && !$0.revoked && $0.record.id != keep }.map(\.record.id)
            for id in ids { s.tokens[id]?.revoked = true }
            return ids
        }
    }

    func touchAdminToken(id: String, logger: Logger) async throws {
        state.withLockedValue { $0.touches[id, default: 0] += 1 }
    }

    func monthlyRequests(tenantId: String, month: String, logger: Logger) async throws -> Int64 { 0 }
}
