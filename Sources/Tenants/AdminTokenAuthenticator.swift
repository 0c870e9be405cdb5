import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage
import TokenAuth

/// Admin bearer tokens: parse, find the active row by public id, verify against its argon2id hash.
/// The row is read on every request, so a deleted token stops working at once on every replica.
public struct AdminTokenAuthenticator: AdminAuthenticator {
    let repository: any TenantRepository
    let verifier: TokenVerifier
    /// Whose `X-Forwarded-For` names the client that failed-attempt limits count.
    let trustedProxies: TrustedProxies
    /// Tokens whose `last_used_at` this replica wrote in the last minute.
    let touched = ExpiringCache<String, Bool>(ttl: .seconds(60))

    public init(repository: any TenantRepository, verifier: TokenVerifier, trustedProxies: TrustedProxies = .none) {
        self.repository = repository
        self.verifier = verifier
        self.trustedProxies = trustedProxies
    }

    public func authenticate(token: String, request: Request, context: KeybrakeRequestContext) async throws(KeybrakeError) -> AdminIdentity {
        guard let parsed = TokenFormat.parse(token, as: .admin) else { throw .adminTokenInvalid }
        let tokenId = "atk_" + parsed.publicId
        let row: (tenantId: String, hash: String)?
        do {
            row = try await repository.activeAdminToken(id: tokenId, logger: context.logger)
        } catch {
            throw DatabaseErrors.map(error, logger: context.logger)
        }
        guard let row else { throw .adminTokenInvalid }
        let client = RequestClient(request, context, proxies: trustedProxies)
        guard try await verifier.verify(parsed, storedHash: row.hash, tenant: row.tenantId, client: client.key) else { throw .adminTokenInvalid }
        // "Last used", to a minute: one write per token per minute per replica, not one per request.
        if touched.get(tokenId) == nil {
            touched.set(tokenId, true)
            try? await repository.touchAdminToken(id: tokenId, logger: context.logger)
        }
        return AdminIdentity(tenantId: row.tenantId, tokenId: tokenId)
    }
}
