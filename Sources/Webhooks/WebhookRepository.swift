import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage
import Vault

/// Webhook endpoints, events and deliveries in Postgres. Every query is scoped by tenant: another tenant's id is
/// simply not found. Secrets are sealed with the vault's master key (AAD: tenant + endpoint id).
public struct WebhookRepository: Sendable {
    let client: DatabasePool
    let sealer: CredentialSealer
    public static let maxEndpointsPerTenant = 20
    /// How long a rotated-out secret keeps signing beside the new one.
    public static let rotationOverlap: TimeInterval = 86_400

    public init(client: DatabasePool, sealer: CredentialSealer) {
        self.client = client
        self.sealer = sealer
    }

    static let columns = """
        id, tenant_id, url, events, description, enabled, format, previous_expires_at, failing_since, disabled_reason, created_at, updated_at
        """

    static func endpoint(_ row: PostgresRow) throws -> WebhookEndpoint {
        let (id, tenantId, url, events, description, enabled, format, previous, failing, reason, created, updated) =
            try row.decode((String, String, String, [String]?, String, Bool, String, Date?, Date?, String?, Date, Date).self)
        return WebhookEndpoint(id: id, tenantId: tenantId, url: url, events: events, description: description, enabled: enabled,
                               format: WebhookEndpoint.Format(rawValue: format) ?? .standard, previousSecretExpiresAt: previous,
                               failingSince: failing, disabledReason: reason, createdAt: created, updatedAt: updated)
    }

    func seal(_ secret: String, tenantId: String, endpointId: String) throws -> (String, ByteBuffer) {
        let (keyId, sealed) = try sealer.seal(Data(secret.utf8), tenantId: tenantId, vendor: "webhook:" + endpointId)
        return (keyId, ByteBuffer(bytes: sealed))
    }

    func open(_ sealed: ByteBuffer, keyId: String, tenantId: String, endpointId: String) throws -> String {
        let data = try sealer.open(Data(sealed.readableBytesView), masterKeyId: keyId, tenantId: tenantId, vendor: "webhook:" + endpointId)
        return String(decoding: data, as: UTF8.self)
    }

    public func create(id: String, tenantId: String, url: String, events: [String]?, description: String, enabled: Bool,
                       format: WebhookEndpoint.Format, secret: String, logger: Logger) async throws -> WebhookEndpoint {
        let (keyId, sealed) = try seal(secret, tenantId: tenantId, endpointId: id)
        return try await client.withTransaction(logger: logger) { conn in
            // The tenant's row lock serialises the count.
            try await conn.query("SELECT 1 FROM tenants WHERE id = \(tenantId) FOR UPDATE", logger: logger)
            for try await n in try await conn.query("SELECT count(*)::int FROM webhook_endpoints WHERE tenant_id = \(tenantId)",
                                                    logger: logger).decode(Int.self) where n >= Self.maxEndpointsPerTenant {
                throw KeybrakeError(status: 409, code: .webhookEndpointLimitReached,
                                    message: "This tenant already has \(n) webhook endpoints, the most allowed (\(Self.maxEndpointsPerTenant)); delete one first.")
            }
            let rows = try await conn.query("""
                INSERT INTO webhook_endpoints (id, tenant_id, url, events, description, enabled, format, secret_key_id, secret_sealed)
                VALUES (\(id), \(tenantId), \(url), \(events), \(description), \(enabled), \(format.rawValue), \(keyId), \(sealed))
                RETURNING \(unescaped: Self.columns)
                """, logger: logger)
            for try await row in rows { return try Self.endpoint(row) }
            throw KeybrakeError.internalError
        }
    }

    public func endpoint(id: String, tenantId: String, logger: Logger) async throws -> WebhookEndpoint? {
        let rows = try await client.query(
            "SELECT \(unescaped: Self.columns) FROM webhook_endpoints WHERE id = \(id) AND tenant_id = \(tenantId)", logger: logger)
        for try await row in rows { return try Self.endpoint(row) }
        return nil
    }

    /// Newest first; nil when `after` is not one of the tenant's endpoints.
    public func list(tenantId: String, after: String?, limit: Int, logger: Logger) async throws -> [WebhookEndpoint]? {
        let rows = try await client.query("""
            SELECT \(unescaped: Self.columns) FROM webhook_endpoints
            WHERE tenant_id = \(tenantId) AND (\(after)::text IS NULL OR (created_at, id) <
                  (SELECT created_at, id FROM webhook_endpoints WHERE id = \(after) AND tenant_id = \(tenantId)))
            ORDER BY created_at DESC, id DESC LIMIT \(limit)
            """, logger: logger)
        var out: [WebhookEndpoint] = []
        for try await row in rows { out.append(try Self.endpoint(row)) }
        if out.isEmpty, let after, try await endpoint(id: after, tenantId: tenantId, logger: logger) == nil { return nil }
        return out
    }

    /// Applies the fields given; enabling an endpoint clears what disabled it.
    public func update(id: String, tenantId: String, _ c: EndpointChange, logger: Logger) async throws -> WebhookEndpoint? {
        let rows = try await client.query("""
            UPDATE webhook_endpoints SET
                url = COALESCE(\(c.url), url),
                events = CASE WHEN \(c.events != nil) THEN \(c.events ?? nil)::text[] ELSE events END,
                description = COALESCE(\(c.description), description),
                enabled = COALESCE(\(c.enabled), enabled),
                format = COALESCE(\(c.format?.rawValue), format),
                disabled_reason = CASE WHEN \(c.enabled)::boolean IS NOT NULL THEN NULL ELSE disabled_reason END,
                failing_since = CASE WHEN \(c.enabled)::boolean IS TRUE THEN NULL ELSE failing_since END,
                updated_at = now()
            WHERE id = \(id) AND tenant_id = \(tenantId)
            RETURNING \(unescaped: Self.columns)
            """, logger: logger)
        for try await row in rows { return try Self.endpoint(row) }
        return nil
    }

    public func delete(id: String, tenantId: String, logger: Logger) async throws -> Bool {
        let rows = try await client.query(
            "DELETE FROM webhook_endpoints WHERE id = \(id) AND tenant_id = \(tenantId) RETURNING 1", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// A new signing secret; the current one keeps signing beside it for `rotationOverlap`.
    public func rotate(id: String, tenantId: String, secret: String, now: Date, logger: Logger) async throws -> WebhookEndpoint? {
        let (keyId, sealed) = try seal(secret, tenantId: tenantId, endpointId: id)
        let until = now.addingTimeInterval(Self.rotationOverlap)
        let rows = try await client.query("""
            UPDATE webhook_endpoints SET previous_key_id = secret_key_id, previous_sealed = secret_sealed, previous_expires_at = \(until),
                secret_key_id = \(keyId), secret_sealed = \(sealed), updated_at = now()
            WHERE id = \(id) AND tenant_id = \(tenantId)
            RETURNING \(unescaped: Self.columns)
            """, logger: logger)
        for try await row in rows { return try Self.endpoint(row) }
        return nil
    }

    /// The secrets that sign a delivery to the endpoint at `now`: the current one, and the previous one during its
    /// overlap.
    public func secrets(endpointId: String, tenantId: String, now: Date, logger: Logger) async throws -> [String] {
        let rows = try await client.query("""
            SELECT secret_key_id, secret_sealed, previous_key_id, previous_sealed, previous_expires_at
            FROM webhook_endpoints WHERE id = \(endpointId) AND tenant_id = \(tenantId)
            """, logger: logger)
        for try await (keyId, sealed, previousId, previousSealed, until) in rows.decode((String, ByteBuffer, String?, ByteBuffer?, Date?).self) {
            var out = [try open(sealed, keyId: keyId, tenantId: tenantId, endpointId: endpointId)]
            if let previousId, let previousSealed, let until, until > now {
                out.append(try open(previousSealed, keyId: previousId, tenantId: tenantId, endpointId: endpointId))
            }
            return out
        }
        return []
    }

    /// A `ping` event for one endpoint (POST …/test), due at once; its id.
    public func ping(endpointId: String, tenantId: String, logger: Logger) async throws -> String? {
        let rows = try await client.query("""
            WITH e AS (SELECT id FROM webhook_endpoints WHERE id = \(endpointId) AND tenant_id = \(tenantId)),
                 ev AS (INSERT INTO webhook_events (id, tenant_id, type, data)
                        SELECT 'evt_' || substr(md5(random()::text || clock_timestamp()::text || e.id), 1, 24), \(tenantId), 'ping',
                               jsonb_build_object('tenant_id', \(tenantId)::text, 'endpoint_id', e.id)
                        FROM e RETURNING id),
                 d AS (INSERT INTO webhook_deliveries (id, tenant_id, event_id, endpoint_id, next_attempt_at)
                       SELECT 'whd_' || substr(md5(random()::text || clock_timestamp()::text || ev.id), 1, 24), \(tenantId), ev.id, \(endpointId), now()
                       FROM ev)
            SELECT id FROM ev
            """, logger: logger)
        for try await id in rows.decode(String.self) { return id }
        return nil
    }

    /// New deliveries of an event, due at once: to `endpointId`, or to every enabled endpoint that takes its type.
    /// nil when the event is not the tenant's; otherwise the endpoints it goes to.
    public func redeliver(eventId: String, tenantId: String, endpointId: String?, logger: Logger) async throws -> [String]? {
        let rows = try await client.query("""
            WITH ev AS (SELECT id, type FROM webhook_events WHERE id = \(eventId) AND tenant_id = \(tenantId)),
                 d AS (INSERT INTO webhook_deliveries (id, tenant_id, event_id, endpoint_id, next_attempt_at)
                       SELECT 'whd_' || substr(md5(random()::text || clock_timestamp()::text || e.id || ev.id), 1, 24), \(tenantId), ev.id, e.id, now()
                       FROM ev JOIN webhook_endpoints e ON e.tenant_id = \(tenantId)
                       WHERE (\(endpointId)::text IS NULL AND e.enabled AND (e.events IS NULL OR ev.type = ANY(e.events)))
                          OR e.id = \(endpointId)
                       RETURNING endpoint_id)
            SELECT (SELECT count(*) FROM ev)::int, COALESCE((SELECT array_agg(endpoint_id ORDER BY endpoint_id) FROM d), '{}')
            """, logger: logger)
        for try await (found, endpoints) in rows.decode((Int, [String]).self) { return found == 0 ? nil : endpoints }
        return nil
    }
}

extension WebhookRepository {
    /// `keybrake rotate-master-key`: re-seals every endpoint's secrets (current and previous) that another master key
    /// sealed, under the active one, each endpoint in its own short transaction. Returns how many endpoints moved.
    public func resealAll(logger: Logger) async throws -> Int {
        let active = sealer.ring.active.id
        var pending: [String] = []
        for try await id in try await client.query("""
            SELECT id FROM webhook_endpoints WHERE secret_key_id <> \(active) OR (previous_key_id IS NOT NULL AND previous_key_id <> \(active))
            ORDER BY id
            """, logger: logger).decode(String.self) { pending.append(id) }
        var moved = 0
        for id in pending {
          do {
            let done: Bool = try await client.withTransaction(logger: logger) { conn in
                let rows = try await conn.query("""
                    SELECT tenant_id, secret_key_id, secret_sealed, previous_key_id, previous_sealed FROM webhook_endpoints WHERE id = \(id) FOR UPDATE
                    """, logger: logger)
                for try await (tenantId, keyId, sealed, previousId, previousSealed) in rows.decode((String, String, ByteBuffer, String?, ByteBuffer?).self) {
                    let (newId, resealed) = try seal(try open(sealed, keyId: keyId, tenantId: tenantId, endpointId: id), tenantId: tenantId, endpointId: id)
                    var previous: (String, ByteBuffer)?
                    if let previousId, let previousSealed {
                        previous = try seal(try open(previousSealed, keyId: previousId, tenantId: tenantId, endpointId: id), tenantId: tenantId, endpointId: id)
                    }
                    try await conn.query("""
                        UPDATE webhook_endpoints SET secret_key_id = \(newId), secret_sealed = \(resealed),
                            previous_key_id = \(previous?.0), previous_sealed = \(previous?.1)
                        WHERE id = \(id)
                        """, logger: logger)
                    return true
                }
                return false
            }
            if done { moved += 1 }
          } catch {
            // A secret no configured key opens stays as it is (its deliveries say "could not sign").
            logger.error("webhook secret cannot be decrypted; left unrotated", metadata: ["endpoint_id": "\(id)"])
          }
        }
        return moved
    }
}
