import Crypto
import Foundation
import KeybrakeCore
import Logging
import NIOCore
import PostgresNIO
import Storage

/// A signed-in dashboard session: who it acts for and the CSRF token its forms must carry.
public struct DashboardSession: Sendable, Equatable {
    public let tenantId: String
    public let adminTokenId: String
    public let csrfToken: String
    /// Read with the session in the same statement: every page shows the name, the overview needs the plan.
    public let tenantName: String
    public let tenantPlan: String
}

/// Dashboard sessions in Postgres (`dashboard_sessions`, Migrations/0003). The cookie holds a random id;
/// the table holds only its SHA-256. Every lookup reads the row joined to its admin token, so signing out,
/// expiry and revoking the admin token all take effect on the next request on every replica.
public struct SessionStore: Sendable {
    let client: DatabasePool
    /// Absolute lifetime of a session (no sliding renewal: sign in again after it).
    public let lifetime: Duration
    /// Live sessions a tenant may hold; signing in past it is refused (422 `tenant_limit_reached`).
    public let maxPerTenant: Int

    public init(client: DatabasePool, lifetime: Duration = .seconds(12 * 3600), maxPerTenant: Int = 100) {
        self.client = client
        self.lifetime = lifetime
        self.maxPerTenant = maxPerTenant
    }

    /// 32 random bytes, base64url without padding (43 characters): a cookie-safe secret.
    static func randomToken() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func hash(_ sessionId: String) -> ByteBuffer {
        ByteBuffer(bytes: Array(SHA256.hash(data: Data(sessionId.utf8))))
    }

    /// A cookie value could be anything; only our own shape is worth a database round trip.
    static func isWellFormed(_ sessionId: String) -> Bool {
        sessionId.utf8.count == 43 && sessionId.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F
        }
    }

    /// Opens a session; returns the cookie value (shown to the browser only).
    public func create(tenantId: String, adminTokenId: String, logger: Logger) async throws -> String {
        let id = Self.randomToken()
        let csrf = Self.randomToken()
        let seconds = Int(lifetime.components.seconds)
        // Expired rows are removed as sessions are created: the table stays small without a janitor.
        try await client.query("DELETE FROM dashboard_sessions WHERE expires_at < now() - interval '1 day'", logger: logger)
        // The count and the insert in one statement: no row inserted means the tenant is at its total.
        let rows = try await client.query("""
            INSERT INTO dashboard_sessions (id_hash, tenant_id, admin_token_id, csrf_token, expires_at)
            SELECT \(Self.hash(id)), \(tenantId), \(adminTokenId), \(csrf), now() + \(seconds) * interval '1 second'
            WHERE (SELECT count(*) FROM dashboard_sessions s JOIN admin_tokens t ON t.id = s.admin_token_id
                   WHERE s.tenant_id = \(tenantId) AND s.expires_at > now() AND t.revoked_at IS NULL) < \(maxPerTenant)
            RETURNING 1
            """, logger: logger)
        for try await _ in rows { return id }
        throw KeybrakeError(status: 422, code: .tenantLimitReached,
            message: "This tenant has \(maxPerTenant) dashboard sessions open, the most it may. Sign out of one, revoke the admin tokens you no longer use (their sessions end with them), or wait for sessions to expire.")
    }

    /// The live session for a cookie value: not expired, and its admin token not revoked. One statement (it runs
    /// on every page), reading the token's status and the tenant's name and plan alongside the session row.
    public func session(cookie: String, logger: Logger) async throws -> DashboardSession? {
        guard Self.isWellFormed(cookie) else { return nil }
        let rows = try await client.query("""
            SELECT s.tenant_id, s.admin_token_id, s.csrf_token, n.name, n.plan
            FROM dashboard_sessions s
            JOIN admin_tokens t ON t.id = s.admin_token_id
            JOIN tenants n ON n.id = s.tenant_id
            WHERE s.id_hash = \(Self.hash(cookie)) AND s.expires_at > now() AND t.revoked_at IS NULL
            """, logger: logger)
        for try await (tenant, token, csrf, name, plan) in rows.decode((String, String, String, String, String).self) {
            return DashboardSession(tenantId: tenant, adminTokenId: token, csrfToken: csrf, tenantName: name, tenantPlan: plan)
        }
        return nil
    }

    /// Signs out: the row is deleted, so the cookie is worthless even if the browser keeps it.
    public func delete(cookie: String, logger: Logger) async throws {
        guard Self.isWellFormed(cookie) else { return }
        try await client.query("DELETE FROM dashboard_sessions WHERE id_hash = \(Self.hash(cookie))", logger: logger)
    }
}
