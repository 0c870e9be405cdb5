import Audit
import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// The money state of the data plane. Every call is one statement (see Migrations/0002): caps,
/// quota and key status are checked and reserved atomically in Postgres, across any number of replicas.
public struct SpendLedger: Sendable {
    let client: PostgresClient

    public init(client: PostgresClient) { self.client = client }

    public enum ReserveResult: Sendable, Equatable {
        case ok
        /// Denial code from kb_reserve with the figures for its message.
        case denied(code: String, used: Int64, cap: Int64)
    }

    /// Reserves `amount` against the key's day and month and counts the request against the tenant's quota.
    /// `amount` 0 only counts the request (and re-checks the key's status).
    public func reserve(
        keyId: String, tenantId: String, amount: MicroUSD, day: String, month: String, usageMonth: String,
        freeQuota: Int, reservationId: String, logger: Logger
    ) async throws -> ReserveResult {
        let rows = try await client.query("""
            SELECT result, used, cap FROM kb_reserve(\(keyId), \(tenantId), \(amount.micros), \(day)::date, \(month)::date,
                \(usageMonth)::date, \(Int64(freeQuota)), \(reservationId))
            """, logger: logger)
        for try await (result, used, cap) in rows.decode((String, Int64, Int64).self) {
            return result == "ok" ? .ok : .denied(code: result, used: used, cap: cap)
        }
        throw KeybrakeError.internalError
    }

    public struct Finish: Sendable {
        public var audit: AuditEvent
        public var reservationId: String?
        public var outcome: String?          // settled | released | unknown
        public var actual: MicroUSD?
        public var completeScopes: [String] = []
        public var recordState: String = "completed"
        public var dropScopes: [String] = []
        public var response: StoredResponse?
        public var pricedObject: String?
        /// UTC month (YYYY-MM-01) to count this request in, when no reserve step counted it.
        public var countUsageMonth: String?

        public init(audit: AuditEvent) { self.audit = audit }
    }

    /// Settles the reservation, writes the audit row and completes idempotency records, atomically.
    public func finish(_ f: Finish, logger: Logger) async throws {
        let headersJSON = try f.response.map { String(decoding: try JSONSerialization.data(withJSONObject: Dictionary($0.headers, uniquingKeysWith: { a, _ in a })), as: UTF8.self) }
        let body = f.response.map { ByteBuffer(bytes: $0.body) }
        try await client.query("""
            SELECT kb_finish(\(try f.audit.columnsJSON())::jsonb, \(f.reservationId)::text, \(f.outcome)::text, \(f.actual?.micros)::bigint,
                \(f.completeScopes)::text[], \(f.recordState)::text, \(f.dropScopes)::text[], \(f.response.map { $0.status })::int,
                \(headersJSON)::jsonb, \(body)::bytea, \(f.pricedObject)::text, \(f.countUsageMonth)::date)
            """, logger: logger)
    }

    /// true when this object's money was counted when it was created through Keybrake.
    public func isPriced(tenantId: String, vendor: String, objectId: String, logger: Logger) async throws -> Bool {
        let rows = try await client.query("""
            SELECT 1 FROM priced_objects WHERE tenant_id = \(tenantId) AND vendor = \(vendor) AND object_id = \(objectId)
            """, logger: logger)
        for try await _ in rows { return true }
        return false
    }
}

/// A response kept for idempotent replay: status, the headers worth replaying, body.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (a: StoredResponse, b: StoredResponse) -> Bool {
        a.status == b.status && a.body == b.body && a.headers.map { $0.0 + ":" + $0.1 } == b.headers.map { $0.0 + ":" + $0.1 }
    }
}
