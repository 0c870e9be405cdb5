import HTTPLayer
import KeybrakeCore
import Storage
import TokenAuth

/// Admin bearer tokens: parse, find the active row by public id, verify against its argon2id hash.
/// The row is read on every request, so a deleted token stops working at once on every replica.
public struct AdminTokenAuthenticator: AdminAuthenticator {
    let repository: any TenantRepository
    let verifier: TokenVerifier

    public init(repository: any TenantRepository, verifier: TokenVerifier) {
        self.repository = repository
        self.verifier = verifier
    }

    public func authenticate(token: String, context: KeybrakeRequestContext) async throws(KeybrakeError) -> AdminIdentity {
        guard let parsed = TokenFormat.parse(token, as: .admin) else { throw .adminTokenInvalid }
        let tokenId = "atk_" + parsed.publicId
        let row: (tenantId: String, hash: String)?
        do {
            row = try await repository.activeAdminToken(id: tokenId, logger: context.logger)
        } catch {
            throw DatabaseErrors.map(error, logger: context.logger)
        }
        guard let row else { throw .adminTokenInvalid }
        guard try await verifier.verify(parsed, storedHash: row.hash) else { throw .adminTokenInvalid }
        return AdminIdentity(tenantId: row.tenantId, tokenId: tokenId)
    }
}
