import Foundation
import KeybrakeCore
import Logging
import NIOCore
import PostgresNIO
import Storage

/// Takes due deliveries from the outbox and posts them (DESIGN §14: at least once out). Any replica may run it at any
/// time: rows are claimed with FOR UPDATE SKIP LOCKED and leased (`next_attempt_at` moved past the attempt's
/// timeout), so two replicas never post the same attempt, and a replica killed mid-attempt leaves its rows due again
/// when the lease runs out. Each delivery is posted on its own task: a slow or dead receiver holds only its own.
/// The clock is injected: tests move time through the whole retry schedule.
public struct WebhookDispatcher: Sendable {
    let client: DatabasePool
    let repository: WebhookRepository
    let transport: any WebhookTransport
    let settings: WebhookSettings
    let clock: any KeybrakeCore.Clock

    public init(client: DatabasePool, repository: WebhookRepository, transport: any WebhookTransport, settings: WebhookSettings,
                clock: any KeybrakeCore.Clock) {
        self.client = client
        self.repository = repository
        self.transport = transport
        self.settings = settings
        self.clock = clock
    }

    public var batchSize: Int { settings.batchSize }

    /// How long a claimed attempt is this replica's: its timeout and a margin. A replica killed mid-attempt leaves
    /// the row due again after this long.
    var lease: TimeInterval { settings.timeout.timeInterval + 5 }

    struct Claimed: Sendable {
        var deliveryId: String, tenantId: String, eventId: String, endpointId: String, attempt: Int
        var url: String, format: WebhookEndpoint.Format, payload: String, summary: String
    }

    /// One pass: claims what is due now and posts it all; returns how many attempts were made. Cancelling the pass
    /// cancels its posts and waits for them (the transport is shut down after it), but not for the claim: a query sent
    /// into a cut network never answers, so the claim runs detached under a deadline and is abandoned at once.
    @discardableResult
    public func runOnce(logger: Logger) async throws -> Int {
        let now = clock.now()
        let claimed = try await Deadline.run(Self.claimDeadline) { try await claim(now: now, logger: logger) }
        if claimed.isEmpty { return 0 }
        await withTaskGroup(of: Void.self) { group in
            for c in claimed {
                group.addTask { await deliver(c, logger: logger) }
            }
        }
        return claimed.count
    }

    static let claimDeadline: Duration = .seconds(60)

    func claim(now: Date, logger: Logger) async throws -> [Claimed] {
        let until = now.addingTimeInterval(lease)
        let rows = try await client.query("""
            WITH due AS (
                SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id
                WHERE d.state = 'pending' AND d.next_attempt_at <= \(now) AND w.enabled
                ORDER BY d.next_attempt_at LIMIT \(settings.batchSize)
                FOR UPDATE OF d SKIP LOCKED)
            UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = \(until), updated_at = now()
            FROM due, webhook_events e, webhook_endpoints w
            WHERE d.id = due.id AND e.id = d.event_id AND w.id = d.endpoint_id
            RETURNING d.id, d.tenant_id, d.event_id, d.endpoint_id, d.attempts, w.url, w.format,
                jsonb_build_object('id', e.id, 'type', e.type, 'created_at', to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                   'data', e.data)::text,
                kb_event_summary(e.type, e.data)
            """, logger: logger)
        var out: [Claimed] = []
        for try await (id, tenant, event, endpoint, attempt, url, format, payload, summary)
            in rows.decode((String, String, String, String, Int, String, String, String, String).self) {
            out.append(Claimed(deliveryId: id, tenantId: tenant, eventId: event, endpointId: endpoint, attempt: attempt, url: url,
                               format: WebhookEndpoint.Format(rawValue: format) ?? .standard, payload: payload, summary: summary))
        }
        return out
    }

    /// The body a receiver gets: the event itself, or for a Slack-compatible endpoint `{"text": …}` (signed too).
    static func body(_ c: Claimed) -> String {
        switch c.format {
        case .standard: return c.payload
        case .slack:
            let data = try? JSONSerialization.data(withJSONObject: ["text": c.summary], options: [.withoutEscapingSlashes])
            return data.map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        }
    }

    func deliver(_ c: Claimed, logger: Logger) async {
        let started = ContinuousClock.now
        let result: PostResult
        do {
            let secrets = try await repository.secrets(endpointId: c.endpointId, tenantId: c.tenantId, now: clock.now(), logger: logger)
            let body = ByteBuffer(string: Self.body(c))
            let timestamp = Int64(clock.now().timeIntervalSince1970)
            let headers = WebhookSigner.headers(secrets: secrets, id: c.eventId, timestamp: timestamp, body: body.readableBytesView)
            result = await transport.post(url: c.url, headers: headers, body: body, timeout: settings.timeout)
        } catch {
            // The secret could not be opened (a master key removed from the ring): nothing is posted unsigned.
            result = PostResult(status: nil, error: "could not sign: the endpoint's secret is sealed under a master key that is not configured")
        }
        let elapsed = ContinuousClock.now - started
        let micros = elapsed.microseconds
        do {
            try await record(c, result: result, latencyMicros: micros, logger: logger)
        } catch {
            logger.warning("could not record a webhook attempt; it will be tried again when its lease runs out",
                           metadata: ["delivery": "\(c.deliveryId)", "error": "\(DatabaseErrors.map(error, logger: logger).code)"])
        }
    }

    func record(_ c: Claimed, result: PostResult, latencyMicros: Int64, logger: Logger) async throws {
        let now = clock.now()
        let next = result.ok ? nil : RetrySchedule.next(after: c.attempt, failedAt: now)
        let state = result.ok ? "delivered" : (next == nil ? "failed" : "pending")
        let disableBefore = now.addingTimeInterval(-RetrySchedule.disableAfter)
        try await client.query("""
            WITH d AS (UPDATE webhook_deliveries SET state = \(state), next_attempt_at = \(next), updated_at = now()
                       WHERE id = \(c.deliveryId) AND attempts = \(c.attempt) AND state = 'pending' RETURNING id),
                 a AS (INSERT INTO webhook_attempts (delivery_id, attempt, tenant_id, endpoint_id, status, error, latency_micros, next_attempt_at, created_at)
                       SELECT id, \(c.attempt), \(c.tenantId), \(c.endpointId), \(result.status), \(result.error), \(latencyMicros), \(next), \(now) FROM d
                       ON CONFLICT DO NOTHING)
            UPDATE webhook_endpoints SET
                failing_since = CASE WHEN \(result.ok) THEN NULL ELSE COALESCE(failing_since, \(now)) END,
                enabled = CASE WHEN NOT \(result.ok) AND failing_since <= \(disableBefore) THEN false ELSE enabled END,
                disabled_reason = CASE WHEN NOT \(result.ok) AND failing_since <= \(disableBefore)
                    THEN 'Disabled by Keybrake: every delivery failed since ' || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ' (5 days). Fix the receiver, then PATCH enabled=true.'
                    ELSE disabled_reason END
            WHERE id = \(c.endpointId) AND EXISTS (SELECT 1 FROM d)
            """, logger: logger)
    }

    /// Keybrake's own housekeeping, on the same pass: `key.expiring` 24 h before a key's `expires_at` (once per key and
    /// expiry; keys that live less than a day, such as per-run child keys, are not announced), and outbox rows older
    /// than 30 days pruned with their deliveries.
    public func sweep(logger: Logger) async throws {
        let now = clock.now()
        try await client.query("""
            SELECT kb_emit_event(k.tenant_id, 'key.expiring', k.id,
                kb_key_event_data(k.id) || jsonb_build_object('expires_at', to_char(k.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
            FROM vault_keys k
            WHERE k.status = 'active' AND k.expires_at > \(now) AND k.expires_at <= \(now) + interval '24 hours'
              AND k.expires_at - k.created_at > interval '24 hours'
              AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.type = 'key.expiring' AND e.key_id = k.id
                              AND e.data->>'expires_at' = to_char(k.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
            """, logger: logger)
        try await client.query("""
            DELETE FROM webhook_events WHERE id IN (SELECT id FROM webhook_events WHERE created_at < \(now) - interval '30 days' LIMIT 10000)
            """, logger: logger)
    }
}
