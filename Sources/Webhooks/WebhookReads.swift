import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// An event as the API lists it; `data` is the payload's `data` object as stored (JSON text).
public struct WebhookEvent: Sendable {
    public var id: String
    public var type: String
    public var keyId: String?
    public var createdAt: Date
    public var dataJSON: String
}

/// One delivery of an event to an endpoint, with its attempts.
public struct WebhookDelivery: Sendable {
    public struct Attempt: Sendable {
        public var attempt: Int
        public var status: Int?
        public var error: String?
        public var latencyMicros: Int64
        public var nextAttemptAt: Date?
        public var at: Date
    }
    public var id: String
    public var eventId: String
    public var eventType: String
    public var state: String
    public var nextAttemptAt: Date?
    public var createdAt: Date
    public var attempts: [Attempt]
}

public struct EventFilter: Sendable {
    public var type: String?
    public var keyId: String?
    public var from: Date?
    public var to: Date?
    public init() {}
}

/// The tenant's events and deliveries (GET /v1/events, GET /v1/webhook-endpoints/{id}/deliveries), through the admin
/// read pool (DESIGN §16). Both are served by (tenant, created_at) or (endpoint, created_at) indexes.
public struct WebhookReads: Sendable {
    let reads: AdminReads

    public init(reads: AdminReads) { self.reads = reads }

    /// Newest first; `after` is the last event id of the previous page (nil result: not the tenant's).
    public func events(tenantId: String, filter f: EventFilter, after: String?, limit: Int, logger: Logger) async throws -> [WebhookEvent]? {
        if let after {
            let found = try await reads.rows("SELECT 1 FROM webhook_events WHERE id = \(after) AND tenant_id = \(tenantId)",
                                             tenantId: tenantId, logger: logger)
            if found.isEmpty { return nil }
        }
        let rows = try await reads.rows("""
            SELECT id, type, key_id, created_at, data::text FROM webhook_events
            WHERE tenant_id = \(tenantId)
              AND (\(f.keyId)::text IS NULL OR key_id = \(f.keyId))
              AND (\(f.type)::text IS NULL OR type = \(f.type))
              AND (\(f.from)::timestamptz IS NULL OR created_at >= \(f.from))
              AND (\(f.to)::timestamptz IS NULL OR created_at < \(f.to))
              AND (\(after)::text IS NULL OR (created_at, id) < (SELECT created_at, id FROM webhook_events WHERE id = \(after) AND tenant_id = \(tenantId)))
            ORDER BY created_at DESC, id DESC LIMIT \(limit)
            """, tenantId: tenantId, logger: logger)
        return try rows.decode((String, String, String?, Date, String).self).map {
            WebhookEvent(id: $0.0, type: $0.1, keyId: $0.2, createdAt: $0.3, dataJSON: $0.4)
        }
    }

    /// One event of the tenant's.
    public func event(id: String, tenantId: String, logger: Logger) async throws -> WebhookEvent? {
        let rows = try await reads.rows("SELECT id, type, key_id, created_at, data::text FROM webhook_events WHERE id = \(id) AND tenant_id = \(tenantId)",
                                        tenantId: tenantId, logger: logger)
        return try rows.decode((String, String, String?, Date, String).self).first.map {
            WebhookEvent(id: $0.0, type: $0.1, keyId: $0.2, createdAt: $0.3, dataJSON: $0.4)
        }
    }

    /// The endpoint's deliveries, newest first, each with its attempts.
    public func deliveries(endpointId: String, tenantId: String, after: String?, limit: Int, logger: Logger) async throws -> [WebhookDelivery]? {
        if let after {
            let found = try await reads.rows("SELECT 1 FROM webhook_deliveries WHERE id = \(after) AND endpoint_id = \(endpointId) AND tenant_id = \(tenantId)",
                                             tenantId: tenantId, logger: logger)
            if found.isEmpty { return nil }
        }
        let rows = try await reads.rows("""
            SELECT d.id, d.event_id, e.type, d.state, d.next_attempt_at, d.created_at,
                   COALESCE((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'status', a.status, 'error', a.error,
                                 'latency_micros', a.latency_micros, 'next_attempt_at', extract(epoch FROM a.next_attempt_at), 'at', extract(epoch FROM a.created_at)) ORDER BY a.attempt)
                             FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]')::text
            FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
            WHERE d.endpoint_id = \(endpointId) AND d.tenant_id = \(tenantId)
              AND (\(after)::text IS NULL OR (d.created_at, d.id) < (SELECT created_at, id FROM webhook_deliveries WHERE id = \(after)))
            ORDER BY d.created_at DESC, d.id DESC LIMIT \(limit)
            """, tenantId: tenantId, logger: logger)
        return try rows.decode((String, String, String, String, Date?, Date, String).self).map { row in
            WebhookDelivery(id: row.0, eventId: row.1, eventType: row.2, state: row.3, nextAttemptAt: row.4, createdAt: row.5,
                            attempts: Self.attempts(row.6))
        }
    }

    static func attempts(_ json: String) -> [WebhookDelivery.Attempt] {
        struct Raw: Decodable {
            let attempt: Int; let status: Int?; let error: String?; let latency_micros: Int64; let next_attempt_at: Double?; let at: Double
        }
        guard let raws = try? JSONDecoder().decode([Raw].self, from: Data(json.utf8)) else { return [] }
        return raws.map {
            WebhookDelivery.Attempt(attempt: $0.attempt, status: $0.status, error: $0.error, latencyMicros: $0.latency_micros,
                                    nextAttemptAt: $0.next_attempt_at.map(Date.init(timeIntervalSince1970:)), at: Date(timeIntervalSince1970: $0.at))
        }
    }
}
