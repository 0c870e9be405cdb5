import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// Idempotency-Key records and duplicate-guard fingerprints, in Postgres so every replica sees them.
/// A record is claimed by one request (state in_flight), then completed with its response, or left
/// `unknown` when the upstream outcome is unknown.
public struct IdempotencyStore: Sendable {
    let client: DatabasePool

    public init(client: DatabasePool) { self.client = client }

    public struct Claim: Sendable {
        public var scope: String
        public var requestHash: String
        /// How long the record lives while in flight (at least as long as its request can).
        public var ttl: Duration
        public var upstreamKey: String?
        /// How long it lives once completed (the duplicate window, or the idempotency TTL).
        public var window: Duration
    }

    public struct Record: Sendable {
        public var scope: String
        public var requestHash: String
        public var state: String
        public var ownerId: String
        public var reservationId: String?
        public var upstreamKey: String?
        public var response: StoredResponse?
    }

    /// Claims every scope for `ownerId` in one statement (kb_claim, which kb_claim_and_reserve also uses); returns the scopes
    /// actually claimed (new, or expired and taken over). The others are live records owned by someone else.
    public func claim(_ claims: [Claim], tenantId: String, ownerId: String, logger: Logger) async throws -> Set<String> {
        guard !claims.isEmpty else { return [] }
        // Postgres arrays of text cannot carry NULL through PostgresNIO's [String]: '' stands for "no upstream key".
        let rows = try await client.query("""
            SELECT kb_claim(\(tenantId), \(ownerId), \(claims.map(\.scope))::text[], \(claims.map(\.requestHash))::text[],
                \(claims.map { $0.upstreamKey ?? "" })::text[], \(claims.map { Int32(clamping: $0.ttl.components.seconds) })::int[])
            """, logger: logger)
        for try await claimed in rows.decode([String].self) { return Set(claimed) }
        return []
    }

    public func record(tenantId: String, scope: String, logger: Logger) async throws -> Record? {
        let rows = try await client.query("""
            SELECT scope, request_hash, state, owner_id, reservation_id, upstream_key, response_status,
                   response_headers::text, response_body
            FROM idempotency_records WHERE tenant_id = \(tenantId) AND scope = \(scope) AND expires_at > now()
            """, logger: logger)
        for try await r in rows.decode((String, String, String, String, String?, String?, Int?, String?, ByteBuffer?).self) {
            var response: StoredResponse?
            if let status = r.6 {
                let headers = (r.7.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] } ?? [:])
                    .sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
                response = StoredResponse(status: status, headers: headers, body: r.8.map { Array($0.readableBytesView) } ?? [])
            }
            return Record(scope: r.0, requestHash: r.1, state: r.2, ownerId: r.3, reservationId: r.4, upstreamKey: r.5, response: response)
        }
        return nil
    }

    public enum TakeOver: Sendable, Equatable {
        /// This request now owns the record; the earlier request's reservation (if it had one) is held for it.
        case taken(reservationId: String?)
        /// The unknown amount is held against another vault key's caps: that key alone may retry it.
        case heldByAnotherKey
        /// No longer unknown (resumed by someone else, resolved or expired).
        case gone
    }

    /// Takes over a record whose outcome is unknown, so a retry can settle it — only by the vault key whose caps
    /// hold its amount. In flight again, the record lives for the retry's lease: if the retry dies too, the record
    /// turns unknown again instead of blocking for the rest of its day.
    public func takeOverUnknown(tenantId: String, scope: String, newOwner: String, keyId: String, lease: Duration,
                                logger: Logger) async throws -> TakeOver {
        let leaseSeconds = Int32(clamping: lease.components.seconds)
        let rows = try await client.query("""
            WITH target AS (
                SELECT i.scope, r.id AS reservation_id, r.key_id
                FROM idempotency_records i LEFT JOIN reservations r ON r.id = i.reservation_id
                WHERE i.tenant_id = \(tenantId) AND i.scope = \(scope) AND i.state = 'unknown' AND i.expires_at > now()
            ), taken AS (
                UPDATE idempotency_records i SET state = 'in_flight', owner_id = \(newOwner),
                    expires_at = now() + make_interval(secs => \(leaseSeconds))
                FROM target t
                WHERE i.tenant_id = \(tenantId) AND i.scope = t.scope AND i.state = 'unknown'
                  AND (t.key_id IS NULL OR t.key_id = \(keyId))
                RETURNING t.reservation_id
            )
            SELECT (SELECT count(*) FROM taken)::int, (SELECT reservation_id FROM taken), (SELECT count(*) FROM target)::int
            """, logger: logger)
        for try await (taken, reservationId, found) in rows.decode((Int, String?, Int).self) {
            if taken > 0 { return .taken(reservationId: reservationId) }
            return found > 0 ? .heldByAnotherKey : .gone
        }
        return .gone
    }

    /// Hands records back to the earlier request whose outcome is still unknown (a resumed retry that was denied,
    /// or that saw a replay): never dropped, so the next retry finds them and their upstream key.
    public func restoreUnknown(tenantId: String, scopes: [String], ownerId: String, earlierOwner: String, logger: Logger) async throws {
        guard !scopes.isEmpty else { return }
        try await client.query("""
            UPDATE idempotency_records SET state = 'unknown', owner_id = \(earlierOwner)
            WHERE tenant_id = \(tenantId) AND scope = ANY(\(scopes)) AND owner_id = \(ownerId)
            """, logger: logger)
    }

    /// Gives up claims (the request was denied before it went upstream).
    public func release(tenantId: String, scopes: [String], ownerId: String, logger: Logger) async throws {
        guard !scopes.isEmpty else { return }
        try await client.query("""
            DELETE FROM idempotency_records WHERE tenant_id = \(tenantId) AND scope = ANY(\(scopes)) AND owner_id = \(ownerId)
            """, logger: logger)
    }
}
