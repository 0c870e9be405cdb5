import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// Idempotency-Key records and duplicate-guard fingerprints, in Postgres so every replica sees them.
/// A record is claimed by one request (state in_flight), then completed with its response, or left
/// `unknown` when the upstream outcome is unknown.
public struct IdempotencyStore: Sendable {
    let client: PostgresClient

    public init(client: PostgresClient) { self.client = client }

    public struct Claim: Sendable {
        public var scope: String
        public var requestHash: String
        public var ttl: Duration
        public var upstreamKey: String?
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

    /// Claims every scope for `ownerId` in one statement (kb_claim, which kb_begin also uses); returns the scopes
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

    /// Takes over a record whose outcome is unknown, so a retry can settle it; nil if someone else did first.
    public func takeOverUnknown(tenantId: String, scope: String, newOwner: String, logger: Logger) async throws -> Record? {
        let rows = try await client.query("""
            UPDATE idempotency_records SET state = 'in_flight', owner_id = \(newOwner)
            WHERE tenant_id = \(tenantId) AND scope = \(scope) AND state = 'unknown' AND expires_at > now()
            RETURNING request_hash, reservation_id, upstream_key
            """, logger: logger)
        for try await r in rows.decode((String, String?, String?).self) {
            return Record(scope: scope, requestHash: r.0, state: "in_flight", ownerId: newOwner, reservationId: r.1, upstreamKey: r.2, response: nil)
        }
        return nil
    }

    /// Gives up claims (the request was denied before it went upstream).
    public func release(tenantId: String, scopes: [String], ownerId: String, logger: Logger) async throws {
        guard !scopes.isEmpty else { return }
        try await client.query("""
            DELETE FROM idempotency_records WHERE tenant_id = \(tenantId) AND scope = ANY(\(scopes)) AND owner_id = \(ownerId)
            """, logger: logger)
    }
}
