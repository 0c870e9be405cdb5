import Foundation
import HTTPLayer
import KeybrakeCore
import Logging
import PostgresNIO
import Storage
import TokenAuth

/// Resolves a vault key presented to the proxy. The key row (status, expiry, policy, ancestors) comes from the
/// replica's `KeyDirectory` while it serves from memory (a change is applied there before the admin request that made
/// it answers), otherwise from Postgres; the argon2 check is skipped by the verifier's cache. Either way a revocation
/// or policy edit applies to the very next request on every replica.
public struct VaultKeyAuthenticator: Sendable {
    let client: DatabasePool
    let verifier: TokenVerifier
    /// Key reads that arrive while one is in flight are read together (one `id = ANY(…)` query); each is still
    /// issued after its request arrived, so a revocation committed before that is always seen.
    let reads: Coalescer<Int, KeyRead, (VaultKey, String)?>
    let directory: KeyDirectory?

    struct KeyRead: Sendable {
        var id: String
        var logger: Logger
    }

    public init(client: DatabasePool, verifier: TokenVerifier, directory: KeyDirectory? = nil) {
        self.client = client
        self.verifier = verifier
        self.directory = directory
        self.reads = Coalescer(maxBatch: 128) { reads, _ in
            let logger = reads[0].logger
            do {
                var rows: [KeyByIdStatement.Row] = []
                if reads.count == 1 {
                    for try await row in try await client.execute(KeyByIdStatement(id: reads[0].id), logger: logger) { rows.append(row) }
                } else {
                    let ids = Array(Set(reads.map(\.id)))
                    for try await row in try await client.execute(KeysByIdsStatement(ids: ids), logger: logger) { rows.append(row) }
                }
                let byId = KeyByIdStatement.assemble(rows)
                return reads.map { .success(byId[$0.id]) }
            } catch {
                return reads.map { _ in .failure(error) }
            }
        }
    }

    public enum Failure: Error, Sendable {
        /// Not a vault token, or no such key: nothing to attribute the request to.
        case invalid
        /// A real key's id with a token that was not proven (wrong secret, this client's attempts used up, no core
        /// to hash on). Anyone may know an id: such attempts are summarised for the key's tenant, never audited one
        /// by one (DESIGN §4).
        case unverified(VaultKey, KeybrakeError)
        /// A real key, proven, but the request may not use it; the key is known so the denial can be audited.
        case denied(VaultKey, KeybrakeError)
    }

    public static let invalidError = KeybrakeError(
        status: 401, code: .vaultKeyInvalid,
        message: "Missing or invalid vault key. Send the kb_vault_… token as `Authorization: Bearer`, as the Basic-auth password, or as X-Keybrake-Key."
    )

    /// `client` is who presents the token: failed attempts are counted per client, so a stranger cannot lock out the holder.
    public func authenticate(token: String, client: RequestClient, now: Date, logger: Logger) async throws -> Result<VaultKey, Failure> {
        guard let parsed = TokenFormat.parse(token, as: .vault) else { return .failure(.invalid) }
        let id = "key_" + parsed.publicId
        let found: (VaultKey, String)?
        let (hit, epoch) = directory?.lookup(id) ?? (nil, nil)
        if let hit {
            found = hit
        } else {
            found = try await reads.submit(KeyRead(id: id, logger: logger), lane: 0)
            if let found, let epoch { directory?.store(found, epoch: epoch) }
        }
        guard let (key, hash) = found else { return .failure(.invalid) }
        do {
            guard try await verifier.verify(parsed, storedHash: hash, tenant: key.tenantId, client: client.key) else {
                return .failure(.unverified(key, Self.invalidError))
            }
        } catch {
            return .failure(.unverified(key, error))
        }
        if key.status == .revoked {
            return .failure(.denied(key, KeybrakeError(
                status: 401, code: .vaultKeyRevoked,
                message: "This vault key (\(key.id), \(key.policy.label)) was revoked\(key.revokedAt.map { " at " + ISO8601DateFormatter().string(from: $0) } ?? ""). Ask the key's owner for a new one."
            )))
        }
        if let expires = key.policy.expiresAt, expires <= now {
            return .failure(.denied(key, KeybrakeError(
                status: 401, code: .vaultKeyExpired,
                message: "This vault key (\(key.id)) expired at \(ISO8601DateFormatter().string(from: expires)). Ask the key's owner to extend it or issue a new one."
            )))
        }
        if let error = Self.chainRefusal(key, now: now) { return .failure(.denied(key, error)) }
        return .success(key)
    }

    /// Why a child key may not be used because of an ancestor (revoked, expired, or missing), if it may not.
    public static func chainRefusal(_ key: VaultKey, now: Date) -> KeybrakeError? {
        guard !key.ancestorIds.isEmpty else { return nil }
        guard key.ancestors.count == key.ancestorIds.count else {
            return KeybrakeError(status: 401, code: .vaultKeyRevoked, message: "This child key's parent keys could not be read; it is refused.")
        }
        for ancestor in key.ancestors.reversed() {
            if ancestor.status == .revoked {
                return KeybrakeError(status: 401, code: .vaultKeyRevoked,
                    message: "This child key (\(key.id)) stopped with its ancestor \(ancestor.id) ('\(ancestor.policy.label)'), which was revoked.")
            }
            if let expires = ancestor.policy.expiresAt, expires <= now {
                return KeybrakeError(status: 401, code: .vaultKeyExpired,
                    message: "This child key (\(key.id)) stopped with its ancestor \(ancestor.id) ('\(ancestor.policy.label)'), which expired at \(ISO8601DateFormatter().string(from: expires)).")
            }
        }
        return nil
    }
}

/// The proxy's key read, prepared once per connection: it runs on every proxied request, and an unnamed
/// statement is parsed and planned by Postgres every time. A child key's ancestors come in the same round trip
/// (rows with an empty hash), so a revoked parent is seen on the child's very next request.
struct KeyByIdStatement: PostgresPreparedStatement {
    static let name = "kb_KeyByIdStatement_v2"
    static let sql = """
        SELECT \(PostgresKeyRepository.columns), token_hash FROM vault_keys WHERE id = $1
        UNION ALL
        SELECT \(PostgresKeyRepository.columns), '' FROM vault_keys
        WHERE id = ANY((SELECT ancestor_ids FROM vault_keys WHERE id = $1)::text[])
        """
    typealias Row = (VaultKey, String)

    var id: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(id)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try Self.decode(row) }

    static func decode(_ row: PostgresRow) throws -> Row {
        let key = try PostgresKeyRepository.makeKey(row)
        var cells = row.makeIterator()
        for _ in 0..<PostgresKeyRepository.columnCount { _ = cells.next() }
        guard let hash = cells.next() else { throw KeybrakeError.internalError }
        return (key, try hash.decode(String.self))
    }

    /// Each requested key (a row with its hash) with its ancestors attached, root first.
    static func assemble(_ rows: [Row]) -> [String: (VaultKey, String)] {
        var all: [String: VaultKey] = [:]
        var requested: [String: (VaultKey, String)] = [:]
        for (key, hash) in rows {
            all[key.id] = key
            if !hash.isEmpty { requested[key.id] = (key, hash) }
        }
        for (id, (key, hash)) in requested where !key.ancestorIds.isEmpty {
            var withChain = key
            // A missing ancestor row cannot happen (keys are never deleted); if it did, the key is refused below.
            withChain.ancestors = key.ancestorIds.compactMap { all[$0] }
            requested[id] = (withChain, hash)
        }
        return requested
    }
}

/// Several keys' rows at once (a batch of concurrent key reads), with their ancestors.
struct KeysByIdsStatement: PostgresPreparedStatement {
    static let name = "kb_KeysByIdsStatement_v2"
    static let sql = """
        SELECT \(PostgresKeyRepository.columns), token_hash FROM vault_keys WHERE id = ANY($1::text[])
        UNION ALL
        SELECT \(PostgresKeyRepository.columns), '' FROM vault_keys
        WHERE id IN (SELECT unnest(ancestor_ids) FROM vault_keys WHERE id = ANY($1::text[]))
        """
    typealias Row = (VaultKey, String)

    var ids: [String]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(ids)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try KeyByIdStatement.decode(row) }
}
