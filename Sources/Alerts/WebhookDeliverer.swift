import AsyncHTTPClient
import Foundation
import KeybrakeCore
import Logging
import NIOCore
import NIOHTTP1
import PostgresNIO
import Storage
import Vault

/// What one attempt got from the receiver: its status, or why there was none.
public struct TransportResult: Sendable, Equatable {
    public var status: Int?
    public var error: String?
    public init(status: Int?, error: String? = nil) {
        self.status = status
        self.error = error
    }
}

/// Sends one signed POST. The real one is `HTTPWebhookTransport`; tests inject others.
public protocol WebhookTransport: Sendable {
    func post(url: String, headers: [(String, String)], body: [UInt8], timeout: Duration) async -> TransportResult
}

/// AsyncHTTPClient, redirects never followed (a 3xx is a failed attempt), the receiver's address checked just before
/// each attempt (`WebhookURLPolicy.refusal`). Answers are read at most 64 KiB and thrown away.
public final class HTTPWebhookTransport: WebhookTransport {
    let client: HTTPClient
    let policy: WebhookURLPolicy

    public init(policy: WebhookURLPolicy) {
        var config = HTTPClient.Configuration(redirectConfiguration: .disallow)
        config.connectionPool = .init(idleTimeout: .seconds(30))
        config.decompression = .disabled
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        self.policy = policy
    }

    public func shutdown() async throws { try await client.shutdown() }

    public func post(url: String, headers: [(String, String)], body: [UInt8], timeout: Duration) async -> TransportResult {
        guard let parsed = URL(string: url), let host = parsed.host else { return TransportResult(status: nil, error: "invalid url") }
        if let refusal = await policy.refusal(host: host) { return TransportResult(status: nil, error: "refused: \(refusal)") }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "Keybrake-Webhooks/1")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                                                                                   + timeout.components.attoseconds / 1_000_000_000))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            return TransportResult(status: Int(response.status.code))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return TransportResult(status: nil, error: "timed out")
        } catch {
            return TransportResult(status: nil, error: "connection failed")
        }
    }
}

/// Takes due deliveries from the outbox and sends them, on every replica (DESIGN §14). A delivery is claimed in one
/// statement (`FOR UPDATE SKIP LOCKED`, so replicas never take the same row) that also pushes its `next_attempt_at`
/// past the attempt's timeout: nothing is locked while the receiver is called, and if this replica dies mid-attempt
/// the row is due again when the claim runs out, for any replica. The outcome is written only if the row is still
/// this claim's (same attempt number). At least once: a receiver deduplicates on `webhook-id` (the event id).
public struct WebhookDeliverer: Sendable {
    let client: PostgresClient
    let sealer: CredentialSealer
    let transport: any WebhookTransport
    public var schedule: RetrySchedule
    public var timeout: Duration
    /// How long a claim keeps a row from other replicas: the timeout plus a margin.
    public var claimSeconds: Int
    public var batchSize: Int

    public init(client: PostgresClient, sealer: CredentialSealer, transport: any WebhookTransport,
                schedule: RetrySchedule = .standard, timeout: Duration = .seconds(15), batchSize: Int = 32) {
        self.client = client
        self.sealer = sealer
        self.transport = transport
        self.schedule = schedule
        self.timeout = timeout
        self.claimSeconds = Int(timeout.components.seconds) + 45
        self.batchSize = batchSize
    }

    struct Claimed: Sendable {
        var deliveryId: String
        var attempt: Int
        var endpointId: String
        var tenantId: String
        var url: String
        var format: String
        var eventId: String
        var eventType: String
        var body: String
        var keys: [[UInt8]]
    }

    /// One pass: claims what is due at `now` and attempts it, concurrently. Returns the number of attempts made.
    @discardableResult
    public func runOnce(now: Date, logger: Logger) async throws -> Int {
        let claimed = try await claim(now: now, logger: logger)
        await withTaskGroup(of: Void.self) { group in
            for c in claimed {
                group.addTask { await self.attempt(c, now: now, logger: logger) }
            }
        }
        return claimed.count
    }

    func claim(now: Date, logger: Logger) async throws -> [Claimed] {
        let rows = try await client.query("""
            WITH due AS (
                SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
                WHERE d.status = 'pending' AND d.next_attempt_at <= \(now) AND e.enabled
                ORDER BY d.next_attempt_at LIMIT \(batchSize)
                FOR UPDATE OF d SKIP LOCKED
            ), claimed AS (
                UPDATE webhook_deliveries d SET attempts = d.attempts + 1,
                    next_attempt_at = \(now)::TIMESTAMPTZ + make_interval(secs => \(claimSeconds)), updated_at = now()
                FROM due WHERE d.id = due.id
                RETURNING d.id, d.attempts, d.endpoint_id, d.event_id
            )
            SELECT c.id, c.attempts, e.id, e.tenant_id, e.url, e.format, ev.id, ev.type,
                   jsonb_build_object('id', ev.id, 'type', ev.type,
                       'created_at', to_char(ev.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'data', ev.data)::TEXT,
                   e.master_key_id, e.secret_sealed,
                   CASE WHEN e.previous_expires_at > \(now) THEN e.previous_master_key_id END,
                   CASE WHEN e.previous_expires_at > \(now) THEN e.previous_secret_sealed END
            FROM claimed c JOIN webhook_endpoints e ON e.id = c.endpoint_id JOIN events ev ON ev.id = c.event_id
            """, logger: logger)
        var out: [Claimed] = []
        for try await (id, attempt, endpoint, tenant, url, format, eventId, type, body, keyId, sealed, prevKeyId, prevSealed)
            in rows.decode((String, Int, String, String, String, String, String, String, String, String, Data, String?, Data?).self) {
            var keys: [[UInt8]] = []
            for (k, s) in [(keyId, sealed)] + (prevKeyId.flatMap { p in prevSealed.map { [(p, $0)] } } ?? []) {
                if let secret = try? sealer.open(s, masterKeyId: k, tenantId: tenant, vendor: Self.aadName(endpoint)),
                   let key = StandardWebhooks.key(of: String(decoding: secret, as: UTF8.self)) {
                    keys.append(key)
                }
            }
            out.append(Claimed(deliveryId: id, attempt: attempt, endpointId: endpoint, tenantId: tenant, url: url, format: format,
                               eventId: eventId, eventType: type, body: body, keys: keys))
        }
        return out
    }

    /// The sealing "vendor" that binds a secret to its endpoint (AAD: tenant + this).
    public static func aadName(_ endpointId: String) -> String { "webhook:" + endpointId }

    func attempt(_ c: Claimed, now: Date, logger: Logger) async {
        var result: TransportResult
        let started = ContinuousClock.now
        if c.keys.isEmpty {
            result = TransportResult(status: nil, error: "signing secret unavailable (master key missing)")
        } else {
            let body = c.format == "slack" ? Array(SlackFormat.body(eventJSON: c.body).utf8) : Array(c.body.utf8)
            let headers = StandardWebhooks.headers(id: c.eventId, timestamp: Int64(now.timeIntervalSince1970), body: body, keys: c.keys)
            result = await transport.post(url: c.url, headers: headers, body: body, timeout: timeout)
        }
        let elapsed = ContinuousClock.now - started
        let latencyMs = Int(elapsed.components.seconds) * 1000 + Int(elapsed.components.attoseconds / 1_000_000_000_000_000)
        let ok = result.status.map { (200..<300).contains($0) } ?? false
        let error = ok ? nil : (result.error ?? result.status.map { "receiver answered \($0)" })
        let next = ok ? nil : schedule.nextAttempt(after: c.attempt, failedAt: now)
        let status = ok ? "succeeded" : (next == nil ? "failed" : "pending")
        do {
            try await record(c, status: status, httpStatus: result.status, error: error, latencyMs: latencyMs, next: next, now: now, logger: logger)
        } catch {
            logger.warning("could not record a webhook delivery", metadata: ["delivery_id": "\(c.deliveryId)",
                                                                             "error": "\(DatabaseErrors.map(error, logger: logger).code)"])
        }
        if !ok {
            logger.info("webhook delivery failed", metadata: ["delivery_id": "\(c.deliveryId)", "endpoint_id": "\(c.endpointId)",
                                                             "attempt": "\(c.attempt)", "reason": "\(error ?? "")"])
        }
    }

    func record(_ c: Claimed, status: String, httpStatus: Int?, error: String?, latencyMs: Int, next: Date?, now: Date, logger: Logger) async throws {
        let succeeded = status == "succeeded"
        try await client.query("""
            WITH d AS (
                UPDATE webhook_deliveries SET status = \(status), next_attempt_at = \(next), last_attempt_at = \(now),
                    last_status = \(httpStatus), last_error = \(error), last_latency_ms = \(latencyMs), updated_at = now()
                WHERE id = \(c.deliveryId) AND attempts = \(c.attempt) AND status = 'pending'
                RETURNING endpoint_id
            )
            UPDATE webhook_endpoints e SET
                failing_since = CASE WHEN \(succeeded) THEN NULL ELSE COALESCE(e.failing_since, \(now)) END,
                enabled = CASE WHEN NOT \(succeeded) AND COALESCE(e.failing_since, \(now)) <= \(now)::TIMESTAMPTZ - make_interval(secs => \(schedule.disableAfter))
                               THEN false ELSE e.enabled END,
                disabled_reason = CASE WHEN NOT \(succeeded) AND COALESCE(e.failing_since, \(now)) <= \(now)::TIMESTAMPTZ - make_interval(secs => \(schedule.disableAfter))
                               THEN 'deliveries failed since ' || to_char(e.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ' (5 days): re-enable with PATCH {"enabled": true}'
                               ELSE e.disabled_reason END
            FROM d WHERE e.id = d.endpoint_id AND (\(succeeded) OR e.enabled)
            """, logger: logger)
    }

    /// `key.expiring` events and the outbox prune (kb_alert_sweep).
    @discardableResult
    public func sweep(now: Date, logger: Logger) async throws -> Int {
        for try await n in try await client.query("SELECT kb_alert_sweep(\(now), 1000)", logger: logger).decode(Int.self) { return n }
        return 0
    }
}

/// The Slack-compatible body (an incoming webhook's `{"text": …}`), written from the standard event.
enum SlackFormat {
    static func body(eventJSON: String) -> String {
        let object = (try? JSONSerialization.jsonObject(with: Data(eventJSON.utf8))) as? [String: Any] ?? [:]
        let type = object["type"] as? String ?? "event"
        let data = object["data"] as? [String: Any] ?? [:]
        let key = (data["key_label"] as? String).map { "“\($0)” (\(data["key_id"] as? String ?? ""))" } ?? (data["key_id"] as? String ?? "")
        func usd(_ name: String) -> String {
            guard let v = data[name] else { return "?" }
            return "$\(v)"
        }
        let text: String
        switch type {
        case EventType.thresholdCrossed:
            text = "Keybrake: key \(key) has spent \(usd("spent_usd")) of its \(data["cap_field"] as? String ?? "cap") \(usd("cap_usd")) for \(data["period"] as? String ?? "") — past \(data["threshold_percent"] ?? "?") %."
        case EventType.capReached:
            text = "Keybrake: key \(key) reached its \(data["cap_field"] as? String ?? "cap") of \(usd("cap_usd")) for \(data["period"] as? String ?? ""); requests are being refused."
        case EventType.outcomeUnknown:
            text = "Keybrake: a request of key \(key) for \(usd("amount_usd")) has an unknown outcome; resolve audit \(data["audit_id"] as? String ?? "")."
        case EventType.keyRevoked:
            text = "Keybrake: key \(key) was revoked."
        case EventType.keyExpiring:
            text = "Keybrake: key \(key) expires at \(data["expires_at"] as? String ?? "")."
        default:
            text = "Keybrake: \(type) (\(object["id"] as? String ?? ""))."
        }
        let out = try? JSONSerialization.data(withJSONObject: ["text": text], options: [.sortedKeys, .withoutEscapingSlashes])
        return out.map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
