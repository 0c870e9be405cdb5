import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// Webhook endpoints, the event outbox and deliveries in Postgres. Every admin query is scoped by tenant. The list
/// reads (endpoints, events, deliveries) go through `AdminReads` (their own pool, statement timeout and per-tenant
/// limit, DESIGN §16); writes and single-row lookups use the main pool.
public struct WebhookRepository: Sendable {
    let client: PostgresClient
    let reads: AdminReads?

    public init(client: PostgresClient, reads: AdminReads? = nil) {
        self.client = client
        self.reads = reads
    }

    static func collect(_ rows: PostgresRowSequence) async throws -> [PostgresRow] {
        var all: [PostgresRow] = []
        for try await row in rows { all.append(row) }
        return all
    }

    /// A list read: on the admin pool when there is one.
    func listRows(_ query: PostgresQuery, tenantId: String, logger: Logger) async throws -> [PostgresRow] {
        if let reads { return try await reads.rows(query, tenantId: tenantId, logger: logger) }
        return try await Self.collect(client.query(query, logger: logger))
    }

    static let endpointColumns = """
        id, tenant_id, url, description, events, format, enabled, disabled_reason, failing_since,
        CASE WHEN previous_expires_at > now() THEN previous_expires_at END, created_at, updated_at
        """

    static func endpoints(_ rows: PostgresRowSequence) async throws -> [WebhookEndpoint] { try endpoints(try await collect(rows)) }

    static func endpoints(_ rows: [PostgresRow]) throws -> [WebhookEndpoint] {
        var out: [WebhookEndpoint] = []
        for (id, tenant, url, description, events, format, enabled, reason, failing, previous, created, updated)
            in try rows.decode((String, String, String, String?, [String], String, Bool, String?, Date?, Date?, Date, Date).self) {
            out.append(WebhookEndpoint(id: id, tenantId: tenant, url: url, description: description, events: events, format: format,
                                       enabled: enabled, disabledReason: reason, failingSince: failing,
                                       previousSecretExpiresAt: previous, createdAt: created, updatedAt: updated))
        }
        return out
    }

    // MARK: - Endpoints

    public func create(_ e: WebhookEndpoint, masterKeyId: String, sealed: Data, logger: Logger) async throws -> WebhookEndpoint {
        let rows = try await client.query("""
            INSERT INTO webhook_endpoints (id, tenant_id, url, description, events, format, enabled, master_key_id, secret_sealed)
            VALUES (\(e.id), \(e.tenantId), \(e.url), \(e.description), \(e.events), \(e.format), \(e.enabled), \(masterKeyId), \(sealed))
            RETURNING \(unescaped: Self.endpointColumns)
            """, logger: logger)
        guard let created = try await Self.endpoints(rows).first else { throw KeybrakeError.internalError }
        return created
    }

    public func endpoint(id: String, tenantId: String, logger: Logger) async throws -> WebhookEndpoint? {
        let rows = try await client.query(
            "SELECT \(unescaped: Self.endpointColumns) FROM webhook_endpoints WHERE id = \(id) AND tenant_id = \(tenantId)", logger: logger)
        return try await Self.endpoints(rows).first
    }

    /// Newest first; nil when `after` is not one of the tenant's endpoints.
    public func list(tenantId: String, after: String?, limit: Int, logger: Logger) async throws -> [WebhookEndpoint]? {
        if let after {
            guard try await endpoint(id: after, tenantId: tenantId, logger: logger) != nil else { return nil }
        }
        return try Self.endpoints(try await listRows("""
            SELECT \(unescaped: Self.endpointColumns) FROM webhook_endpoints
            WHERE tenant_id = \(tenantId)
              AND (\(after)::TEXT IS NULL OR (created_at, id) < (SELECT created_at, id FROM webhook_endpoints WHERE id = \(after) AND tenant_id = \(tenantId)))
            ORDER BY created_at DESC, id DESC LIMIT \(limit)
            """, tenantId: tenantId, logger: logger))
    }

    /// Saves the editable fields. Enabling an endpoint clears why it was disabled and its failure streak.
    public func update(_ e: WebhookEndpoint, logger: Logger) async throws -> WebhookEndpoint? {
        let rows = try await client.query("""
            UPDATE webhook_endpoints SET url = \(e.url), description = \(e.description), events = \(e.events), format = \(e.format),
                enabled = \(e.enabled),
                disabled_reason = CASE WHEN \(e.enabled) THEN NULL ELSE COALESCE(disabled_reason, 'disabled by the tenant') END,
                failing_since = CASE WHEN \(e.enabled) AND NOT enabled THEN NULL ELSE failing_since END,
                updated_at = now()
            WHERE id = \(e.id) AND tenant_id = \(e.tenantId)
            RETURNING \(unescaped: Self.endpointColumns)
            """, logger: logger)
        return try await Self.endpoints(rows).first
    }

    public func delete(id: String, tenantId: String, logger: Logger) async throws -> Bool {
        let rows = try await client.query(
            "DELETE FROM webhook_endpoints WHERE id = \(id) AND tenant_id = \(tenantId) RETURNING id", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// A new secret; the current one keeps signing until `previousUntil`.
    public func rotate(id: String, tenantId: String, masterKeyId: String, sealed: Data, previousFor seconds: Int,
                       logger: Logger) async throws -> WebhookEndpoint? {
        let rows = try await client.query("""
            UPDATE webhook_endpoints SET previous_master_key_id = master_key_id, previous_secret_sealed = secret_sealed,
                previous_expires_at = now() + make_interval(secs => \(seconds)),
                master_key_id = \(masterKeyId), secret_sealed = \(sealed), updated_at = now()
            WHERE id = \(id) AND tenant_id = \(tenantId)
            RETURNING \(unescaped: Self.endpointColumns)
            """, logger: logger)
        return try await Self.endpoints(rows).first
    }

    // MARK: - Events

    static let eventColumns = "id, type, key_id, period, data::TEXT, created_at"

    static func events(_ rows: PostgresRowSequence) async throws -> [StoredEvent] { try events(try await collect(rows)) }

    static func events(_ rows: [PostgresRow]) throws -> [StoredEvent] {
        var out: [StoredEvent] = []
        for (id, type, key, period, data, created) in try rows.decode((String, String, String?, String?, String, Date).self) {
            out.append(StoredEvent(id: id, type: type, keyId: key, period: period, data: data, createdAt: created))
        }
        return out
    }

    public func event(id: String, tenantId: String, logger: Logger) async throws -> StoredEvent? {
        try await Self.events(client.query(
            "SELECT \(unescaped: Self.eventColumns) FROM events WHERE id = \(id) AND tenant_id = \(tenantId)", logger: logger)).first
    }

    /// Newest first; nil when `after` is not one of the tenant's events.
    public func events(tenantId: String, filter f: EventFilter, after: String?, limit: Int, logger: Logger) async throws -> [StoredEvent]? {
        if let after {
            guard try await event(id: after, tenantId: tenantId, logger: logger) != nil else { return nil }
        }
        let rows = try await listRows("""
            SELECT \(unescaped: Self.eventColumns) FROM events
            WHERE tenant_id = \(tenantId)
              AND (\(f.type)::TEXT IS NULL OR type = \(f.type))
              AND (\(f.keyId)::TEXT IS NULL OR key_id = \(f.keyId))
              AND (\(f.from)::TIMESTAMPTZ IS NULL OR created_at >= \(f.from))
              AND (\(f.to)::TIMESTAMPTZ IS NULL OR created_at < \(f.to))
              AND (\(after)::TEXT IS NULL OR (created_at, id) < (SELECT created_at, id FROM events WHERE id = \(after) AND tenant_id = \(tenantId)))
            ORDER BY created_at DESC, id DESC LIMIT \(limit)
            """, tenantId: tenantId, logger: logger)
        return try Self.events(rows)
    }

    /// A `ping` event and its one delivery, to `endpointId` only (due now).
    public func ping(endpointId: String, tenantId: String, logger: Logger) async throws -> WebhookDelivery? {
        let rows = try await client.query("""
            WITH e AS (
                SELECT id FROM webhook_endpoints WHERE id = \(endpointId) AND tenant_id = \(tenantId)
            ), ev AS (
                INSERT INTO events (id, tenant_id, type, data)
                SELECT kb_event_id(), \(tenantId), 'ping', jsonb_build_object('tenant_id', \(tenantId)::TEXT, 'endpoint_id', e.id) FROM e
                RETURNING id
            )
            INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, next_attempt_at)
            SELECT 'whd_' || replace(gen_random_uuid()::TEXT, '-', ''), \(tenantId), \(endpointId), ev.id, now() FROM ev
            RETURNING id
            """, logger: logger)
        for try await id in rows.decode(String.self) { return try await delivery(id: id, logger: logger) }
        return nil
    }

    /// Delivers the event again to every enabled endpoint of the tenant that subscribes to it, now, with a fresh
    /// retry schedule; nil when the event is not the tenant's.
    public func redeliver(eventId: String, tenantId: String, logger: Logger) async throws -> [WebhookDelivery]? {
        guard let event = try await event(id: eventId, tenantId: tenantId, logger: logger) else { return nil }
        let rows = try await client.query("""
            INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, next_attempt_at)
            SELECT 'whd_' || replace(gen_random_uuid()::TEXT, '-', ''), \(tenantId), e.id, \(eventId), now()
            FROM webhook_endpoints e
            WHERE e.tenant_id = \(tenantId) AND e.enabled
              AND (\(event.type) = 'ping' OR cardinality(e.events) = 0 OR \(event.type) = ANY(e.events))
              AND (\(event.type) <> 'ping' OR EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = \(eventId) AND d.endpoint_id = e.id))
            ON CONFLICT (endpoint_id, event_id) DO UPDATE SET status = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
            RETURNING id
            """, logger: logger)
        var out: [WebhookDelivery] = []
        for try await id in rows.decode(String.self) {
            if let d = try await delivery(id: id, logger: logger) { out.append(d) }
        }
        return out
    }

    // MARK: - Deliveries

    static let deliveryColumns = """
        d.id, d.endpoint_id, d.event_id, ev.type, d.status, d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status,
        d.last_error, d.last_latency_ms, d.created_at
        """

    static func deliveries(_ rows: PostgresRowSequence) async throws -> [WebhookDelivery] { try deliveries(try await collect(rows)) }

    static func deliveries(_ rows: [PostgresRow]) throws -> [WebhookDelivery] {
        var out: [WebhookDelivery] = []
        for (id, endpoint, event, type, status, attempts, next, last, lastStatus, lastError, latency, created)
            in try rows.decode((String, String, String, String, String, Int, Date?, Date?, Int?, String?, Int?, Date).self) {
            out.append(WebhookDelivery(id: id, endpointId: endpoint, eventId: event, eventType: type, status: status, attempts: attempts,
                                       nextAttemptAt: next, lastAttemptAt: last, lastStatus: lastStatus, lastError: lastError,
                                       lastLatencyMs: latency, createdAt: created))
        }
        return out
    }

    public func delivery(id: String, logger: Logger) async throws -> WebhookDelivery? {
        try await Self.deliveries(client.query("""
            SELECT \(unescaped: Self.deliveryColumns) FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id WHERE d.id = \(id)
            """, logger: logger)).first
    }

    /// An endpoint's deliveries, newest first; nil when the endpoint (or the cursor) is not the tenant's.
    public func deliveries(endpointId: String, tenantId: String, after: String?, limit: Int, logger: Logger) async throws -> [WebhookDelivery]? {
        guard try await endpoint(id: endpointId, tenantId: tenantId, logger: logger) != nil else { return nil }
        if let after {
            let check = try await client.query(
                "SELECT 1 FROM webhook_deliveries WHERE id = \(after) AND endpoint_id = \(endpointId)", logger: logger)
            var found = false
            for try await _ in check { found = true }
            if !found { return nil }
        }
        return try Self.deliveries(try await listRows("""
            SELECT \(unescaped: Self.deliveryColumns) FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id
            WHERE d.endpoint_id = \(endpointId) AND d.tenant_id = \(tenantId)
              AND (\(after)::TEXT IS NULL OR (d.created_at, d.id) < (SELECT created_at, id FROM webhook_deliveries WHERE id = \(after)))
            ORDER BY d.created_at DESC, d.id DESC LIMIT \(limit)
            """, tenantId: tenantId, logger: logger))
    }
}
