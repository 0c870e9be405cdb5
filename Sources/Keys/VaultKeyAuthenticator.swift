import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage
import TokenAuth

/// Resolves a vault key presented to the proxy. The key row (status, expiry, policy) is read from
/// Postgres on every request; only the argon2 check is skipped by the verifier's cache, so a
/// revocation or policy edit applies to the very next request on every replica.
public struct VaultKeyAuthenticator: Sendable {
    let client: PostgresClient
    let verifier: TokenVerifier
    /// Key reads that arrive while one is in flight are read together (one `id = ANY(…)` query); each is still
    /// issued after its request arrived, so a revocation committed before that is always seen.
    let reads: Coalescer<Int, KeyRead, (VaultKey, String)?>

    struct KeyRead: Sendable {
        var id: String
        var logger: Logger
    }

    public init(client: PostgresClient, verifier: TokenVerifier) {
        self.client = client
        self.verifier = verifier
        self.reads = Coalescer(maxBatch: 128) { reads, _ in
            let logger = reads[0].logger
            do {
                if reads.count == 1 {
                    var found: (VaultKey, String)?
                    for try await row in try await client.execute(KeyByIdStatement(id: reads[0].id), logger: logger) { found = row }
                    return [.success(found)]
                }
                var byId: [String: (VaultKey, String)] = [:]
                let ids = Array(Set(reads.map(\.id)))
                for try await row in try await client.execute(KeysByIdsStatement(ids: ids), logger: logger) { byId[row.0.id] = row }
                return reads.map { .success(byId[$0.id]) }
            } catch {
                return reads.map { _ in .failure(error) }
            }
        }
    }

    public enum Failure: Error, Sendable {
        /// Not a vault token, or no such key: nothing to attribute the request to.
        case invalid
        /// A real key, but the request may not use it; the key is known so the denial can be audited.
        case denied(VaultKey, KeybrakeError)
    }

    public static let invalidError = KeybrakeError(
        status: 401, code: "vault_key_invalid",
        message: "Missing or invalid vault key. Send the kb_vault_… token as `Authorization: Bearer`, as the Basic-auth password, or as X-Keybrake-Key."
    )

    public func authenticate(token: String, now: Date, logger: Logger) async throws -> Result<VaultKey, Failure> {
        guard let parsed = TokenFormat.parse(token, as: .vault) else { return .failure(.invalid) }
        let id = "key_" + parsed.publicId
        let found = try await reads.submit(KeyRead(id: id, logger: logger), lane: 0)
        guard let (key, hash) = found else { return .failure(.invalid) }
        do {
            guard try await verifier.verify(parsed, storedHash: hash) else { return .failure(.invalid) }
        } catch {
            return .failure(.denied(key, error))
        }
        if key.status == .revoked {
            return .failure(.denied(key, KeybrakeError(
                status: 401, code: "vault_key_revoked",
                message: "This vault key (\(key.id), \(key.policy.label)) was revoked\(key.revokedAt.map { " at " + ISO8601DateFormatter().string(from: $0) } ?? ""). Ask the key's owner for a new one."
            )))
        }
        if let expires = key.policy.expiresAt, expires <= now {
            return .failure(.denied(key, KeybrakeError(
                status: 401, code: "vault_key_expired",
                message: "This vault key (\(key.id)) expired at \(ISO8601DateFormatter().string(from: expires)). Ask the key's owner to extend it or issue a new one."
            )))
        }
        return .success(key)
    }
}

/// The proxy's key read, prepared once per connection: it runs on every proxied request, and an unnamed
/// statement is parsed and planned by Postgres every time.
struct KeyByIdStatement: PostgresPreparedStatement {
    static let name = "kb_KeyByIdStatement"
    static let sql = "SELECT \(PostgresKeyRepository.columns), token_hash FROM vault_keys WHERE id = $1"
    typealias Row = (VaultKey, String)

    var id: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(id)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try Self.decode(row) }

    static func decode(_ row: PostgresRow) throws -> Row {
        let r = try row.decode((String, String, String, String, String, [String], Int64?, Int64?, Int64?, Date?, Int?, Bool, Int,
                                String, [String], Date, Date, Date?, String).self)
        return (PostgresKeyRepository.makeKey((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12, r.13, r.14, r.15, r.16, r.17)), r.18)
    }
}

/// Several keys' rows at once (a batch of concurrent key reads).
struct KeysByIdsStatement: PostgresPreparedStatement {
    static let name = "kb_KeysByIdsStatement"
    static let sql = "SELECT \(PostgresKeyRepository.columns), token_hash FROM vault_keys WHERE id = ANY($1::text[])"
    typealias Row = (VaultKey, String)

    var ids: [String]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(ids)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try KeyByIdStatement.decode(row) }
}
