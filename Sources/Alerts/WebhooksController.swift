import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage
import Vault

/// Webhook endpoints and the event log (DESIGN §14): POST/GET/GET{id}/PATCH/DELETE /v1/webhook-endpoints,
/// POST …/{id}/rotate-secret, POST …/{id}/test, GET …/{id}/deliveries, GET /v1/events, POST /v1/events/{id}/redeliver.
/// The signing secret is answered once (create, rotate) and stored sealed with the master key ring.
public struct WebhooksController: Sendable {
    public let repository: WebhookRepository
    let sealer: CredentialSealer
    let urlPolicy: WebhookURLPolicy
    let clock: any KeybrakeCore.Clock

    public static let defaultPageSize = 50
    public static let maxPageSize = 100
    /// How long the previous secret keeps signing after a rotation.
    public static let rotationOverlapSeconds = 86_400
    public static let maxEndpointsPerTenant = 20

    public init(repository: WebhookRepository, sealer: CredentialSealer, urlPolicy: WebhookURLPolicy, clock: any KeybrakeCore.Clock) {
        self.repository = repository
        self.sealer = sealer
        self.urlPolicy = urlPolicy
        self.clock = clock
    }

    public func addAdminRoutes(to group: some RouterMethods<KeybrakeRequestContext>) {
        group.post("/webhook-endpoints") { request, context in try await self.create(request, context) }
        group.get("/webhook-endpoints") { request, context in try await self.list(request, context) }
        group.get("/webhook-endpoints/:id") { _, context in try await self.show(context) }
        group.patch("/webhook-endpoints/:id") { request, context in try await self.update(request, context) }
        group.delete("/webhook-endpoints/:id") { _, context in try await self.delete(context) }
        group.post("/webhook-endpoints/:id/rotate-secret") { _, context in try await self.rotate(context) }
        group.post("/webhook-endpoints/:id/test") { _, context in try await self.test(context) }
        group.get("/webhook-endpoints/:id/deliveries") { request, context in try await self.deliveries(request, context) }
        group.get("/events") { request, context in try await self.events(request, context) }
        group.get("/events/:id") { _, context in try await self.event(context) }
        group.post("/events/:id/redeliver") { _, context in try await self.redeliver(context) }
    }

    // MARK: - Shapes

    struct EndpointBody: Encodable {
        let id: String
        let url: String
        @NullEncoded var description: String?
        let events: [String]
        let format: String
        let enabled: Bool
        @NullEncoded var disabledReason: String?
        @NullEncoded var failingSince: Date?
        /// While a rotated-out secret still signs beside the new one.
        @NullEncoded var previousSecretExpiresAt: Date?
        let createdAt: Date
        let updatedAt: Date
    }

    static func body(_ e: WebhookEndpoint) -> EndpointBody {
        EndpointBody(id: e.id, url: e.url, description: e.description, events: e.events, format: e.format, enabled: e.enabled,
                     disabledReason: e.disabledReason, failingSince: e.failingSince, previousSecretExpiresAt: e.previousSecretExpiresAt,
                     createdAt: e.createdAt, updatedAt: e.updatedAt)
    }

    struct DeliveryBody: Encodable {
        let id: String
        let endpointId: String
        let eventId: String
        let eventType: String
        let status: String
        let attempts: Int
        @NullEncoded var nextAttemptAt: Date?
        @NullEncoded var lastAttemptAt: Date?
        @NullEncoded var lastStatus: Int?
        @NullEncoded var lastError: String?
        @NullEncoded var lastLatencyMs: Int?
        let createdAt: Date
    }

    static func body(_ d: WebhookDelivery) -> DeliveryBody {
        DeliveryBody(id: d.id, endpointId: d.endpointId, eventId: d.eventId, eventType: d.eventType, status: d.status, attempts: d.attempts,
                     nextAttemptAt: d.status == "pending" ? d.nextAttemptAt : nil, lastAttemptAt: d.lastAttemptAt, lastStatus: d.lastStatus,
                     lastError: d.lastError, lastLatencyMs: d.lastLatencyMs, createdAt: d.createdAt)
    }

    /// An event as delivered: `{id, type, created_at, data}` (data verbatim from the outbox).
    struct EventBody: Encodable {
        let id: String
        let type: String
        let createdAt: Date
        let data: RawJSON
    }

    static func body(_ e: StoredEvent) -> EventBody { EventBody(id: e.id, type: e.type, createdAt: e.createdAt, data: RawJSON(text: e.data)) }

    // MARK: - Endpoints

    static let fields: Set<String> = ["url", "events", "description", "enabled", "format"]

    /// Applies the fields present in `json` to `e`.
    func apply(_ json: JSONObjectReader, to e: inout WebhookEndpoint) throws(KeybrakeError) {
        try json.rejectUnknown(allowed: Self.fields)
        if json.has("url") {
            guard let url = try json.string("url", maxLength: WebhookURLPolicy.maxLength) else { throw .invalidRequest("url cannot be null.", field: "url") }
            e.url = try urlPolicy.validate(url).absoluteString
        }
        if json.has("events") {
            let events = try json.stringArray("events") ?? []
            for type in events where !EventType.subscribable.contains(type) {
                throw .invalidRequest("events: '\(type.prefix(80))' is not an event type; use \(EventType.subscribable.joined(separator: ", ")) (empty: all).", field: "events")
            }
            e.events = Array(Set(events)).sorted()
        }
        if json.has("description") {
            let d = try json.string("description", maxLength: 500)
            if let d, d.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0.properties.generalCategory == .format }) {
                throw .invalidRequest("description may not contain control or bidi-control characters.", field: "description")
            }
            e.description = d
        }
        if json.has("enabled") {
            guard let enabled = try json.bool("enabled") else { throw .invalidRequest("enabled cannot be null.", field: "enabled") }
            e.enabled = enabled
        }
        if json.has("format") {
            let format = try json.string("format", maxLength: 20)
            guard let format, format == "standard" || format == "slack" else {
                throw .invalidRequest("format must be standard (signed JSON events) or slack (a Slack incoming-webhook message).", field: "format")
            }
            e.format = format
        }
    }

    /// Validates `json` (url required), seals a new secret and stores the endpoint; the secret is returned once.
    /// Shared by the admin API and the dashboard.
    public func createEndpoint(tenantId: String, json: JSONObjectReader, context: KeybrakeRequestContext) async throws -> (WebhookEndpoint, String) {
        guard json.has("url") else { throw KeybrakeError.invalidRequest("url is required.", field: "url") }
        let now = clock.now()
        var endpoint = WebhookEndpoint(id: Identifier.make("whe"), tenantId: tenantId, url: "", description: nil, events: [],
                                       format: "standard", enabled: true, disabledReason: nil, failingSince: nil,
                                       previousSecretExpiresAt: nil, createdAt: now, updatedAt: now)
        try apply(json, to: &endpoint)
        let existing = try await db(context) { try await repository.list(tenantId: tenantId, after: nil, limit: Self.maxEndpointsPerTenant, logger: context.logger) }
        if (existing?.count ?? 0) >= Self.maxEndpointsPerTenant {
            throw KeybrakeError(status: 409, code: "webhook_endpoint_limit_reached",
                                message: "This tenant already has \(Self.maxEndpointsPerTenant) webhook endpoints, the most allowed; delete one first.")
        }
        let secret = StandardWebhooks.generateSecret()
        let sealed = try sealer.seal(Data(secret.utf8), tenantId: tenantId, vendor: WebhookDeliverer.aadName(endpoint.id))
        let created = try await db(context) {
            try await repository.create(endpoint, masterKeyId: sealed.masterKeyId, sealed: sealed.sealed, logger: context.logger)
        }
        return (created, secret)
    }

    /// A new secret for `endpoint`; the current one keeps signing for 24 h. The new secret is returned once.
    public func rotateSecret(_ endpoint: WebhookEndpoint, context: KeybrakeRequestContext) async throws -> (WebhookEndpoint, String) {
        let secret = StandardWebhooks.generateSecret()
        let sealed = try sealer.seal(Data(secret.utf8), tenantId: endpoint.tenantId, vendor: WebhookDeliverer.aadName(endpoint.id))
        guard let saved = try await db(context, {
            try await repository.rotate(id: endpoint.id, tenantId: endpoint.tenantId, masterKeyId: sealed.masterKeyId, sealed: sealed.sealed,
                                        previousFor: Self.rotationOverlapSeconds, logger: context.logger)
        }) else { throw KeybrakeError.notFound("webhook endpoint") }
        return (saved, secret)
    }

    func create(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let json = try await JSONObjectReader.decode(request, context: context)
        let (created, secret) = try await createEndpoint(tenantId: admin.tenantId, json: json, context: context)
        struct Created: Encodable { let endpoint: EndpointBody; let secret: String }
        return try JSONResponse.make(.created, Created(endpoint: Self.body(created), secret: secret))
    }

    func list(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let (limit, after) = try Self.page(request, kind: "w1", idPrefix: "whe_")
        guard let rows = try await db(context, {
            try await repository.list(tenantId: admin.tenantId, after: after, limit: limit + 1, logger: context.logger)
        }) else { throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor") }
        let page = Array(rows.prefix(limit))
        struct Page: Encodable { let data: [EndpointBody]; @NullEncoded var nextCursor: String? }
        return try JSONResponse.make(.ok, Page(data: page.map(Self.body),
                                               nextCursor: rows.count > limit ? page.last.map { PageCursor.encode($0.id, kind: "w1") } : nil))
    }

    func owned(_ context: KeybrakeRequestContext) async throws -> WebhookEndpoint {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        guard let e = try await db(context, { try await repository.endpoint(id: id, tenantId: admin.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("webhook endpoint")
        }
        return e
    }

    func show(_ context: KeybrakeRequestContext) async throws -> Response {
        try JSONResponse.make(.ok, Self.body(try await owned(context)))
    }

    func update(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        var endpoint = try await owned(context)
        try apply(try await JSONObjectReader.decode(request, context: context), to: &endpoint)
        guard let saved = try await db(context, { try await repository.update(endpoint, logger: context.logger) }) else {
            throw KeybrakeError.notFound("webhook endpoint")
        }
        return try JSONResponse.make(.ok, Self.body(saved))
    }

    func delete(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        guard try await db(context, { try await repository.delete(id: id, tenantId: admin.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("webhook endpoint")
        }
        return Response(status: .noContent)
    }

    func rotate(_ context: KeybrakeRequestContext) async throws -> Response {
        let (saved, secret) = try await rotateSecret(try await owned(context), context: context)
        struct Rotated: Encodable { let endpoint: EndpointBody; let secret: String }
        return try JSONResponse.make(.ok, Rotated(endpoint: Self.body(saved), secret: secret))
    }

    func test(_ context: KeybrakeRequestContext) async throws -> Response {
        let endpoint = try await owned(context)
        guard endpoint.enabled else {
            throw KeybrakeError(status: 409, code: "webhook_endpoint_disabled",
                                message: "This endpoint is disabled (\(endpoint.disabledReason ?? "by the tenant")); enable it with PATCH {\"enabled\": true} first.")
        }
        guard let delivery = try await db(context, {
            try await repository.ping(endpointId: endpoint.id, tenantId: endpoint.tenantId, logger: context.logger)
        }) else { throw KeybrakeError.notFound("webhook endpoint") }
        struct Queued: Encodable { let delivery: DeliveryBody }
        return try JSONResponse.make(.accepted, Queued(delivery: Self.body(delivery)))
    }

    func deliveries(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        let (limit, after) = try Self.page(request, kind: "d1", idPrefix: "whd_")
        guard let rows = try await db(context, {
            try await repository.deliveries(endpointId: id, tenantId: admin.tenantId, after: after, limit: limit + 1, logger: context.logger)
        }) else {
            if after != nil, try await db(context, { try await repository.endpoint(id: id, tenantId: admin.tenantId, logger: context.logger) }) != nil {
                throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor")
            }
            throw KeybrakeError.notFound("webhook endpoint")
        }
        let page = Array(rows.prefix(limit))
        struct Page: Encodable { let data: [DeliveryBody]; @NullEncoded var nextCursor: String? }
        return try JSONResponse.make(.ok, Page(data: page.map(Self.body),
                                               nextCursor: rows.count > limit ? page.last.map { PageCursor.encode($0.id, kind: "d1") } : nil))
    }

    // MARK: - Events

    func events(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        var query: [String: String] = [:]
        for (k, v) in request.uri.queryParameters { query[String(k)] = String(v) }
        var filter = EventFilter()
        if let type = query["type"], !type.isEmpty {
            guard EventType.subscribable.contains(type) || type == EventType.ping else {
                throw KeybrakeError.invalidRequest("type must be one of \((EventType.subscribable + [EventType.ping]).joined(separator: ", ")).", field: "type")
            }
            filter.type = type
        }
        if let key = query["key_id"], !key.isEmpty {
            guard key.hasPrefix("key_"), key.count <= 64, Identifier.isBase62(Substring(key.dropFirst(4))) else {
                throw KeybrakeError.invalidRequest("key_id must be a key id (key_…).", field: "key_id")
            }
            filter.keyId = key
        }
        for name in ["from", "to"] {
            guard let raw = query[name], !raw.isEmpty else { continue }
            guard let date = RFC3339.parse(raw) else {
                throw KeybrakeError.invalidRequest("\(name) must be an RFC 3339 timestamp such as 2026-12-06T00:00:00Z.", field: name)
            }
            if name == "from" { filter.from = date } else { filter.to = date }
        }
        let (limit, after) = try Self.page(request, kind: "e1", idPrefix: "evt_")
        guard let rows = try await db(context, {
            try await repository.events(tenantId: admin.tenantId, filter: filter, after: after, limit: limit + 1, logger: context.logger)
        }) else { throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor") }
        let page = Array(rows.prefix(limit))
        struct Page: Encodable { let data: [EventBody]; @NullEncoded var nextCursor: String? }
        return try JSONResponse.make(.ok, Page(data: page.map(Self.body),
                                               nextCursor: rows.count > limit ? page.last.map { PageCursor.encode($0.id, kind: "e1") } : nil))
    }

    func event(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        guard let e = try await db(context, { try await repository.event(id: id, tenantId: admin.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("event")
        }
        return try JSONResponse.make(.ok, Self.body(e))
    }

    func redeliver(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        guard let deliveries = try await db(context, {
            try await repository.redeliver(eventId: id, tenantId: admin.tenantId, logger: context.logger)
        }) else { throw KeybrakeError.notFound("event") }
        struct Queued: Encodable { let data: [DeliveryBody] }
        return try JSONResponse.make(.accepted, Queued(data: deliveries.map(Self.body)))
    }

    // MARK: - Helpers

    static func page(_ request: Request, kind: String, idPrefix: String) throws(KeybrakeError) -> (Int, String?) {
        var limit = defaultPageSize
        if let raw = request.uri.queryParameters["limit"].map(String.init) {
            guard let n = Int(raw), (1...maxPageSize).contains(n) else {
                throw .invalidRequest("limit must be a whole number from 1 to \(maxPageSize).", field: "limit")
            }
            limit = n
        }
        var after: String?
        if let raw = request.uri.queryParameters["cursor"].map(String.init), !raw.isEmpty {
            guard let id = PageCursor.decode(raw, kind: kind, idPrefix: idPrefix) else {
                throw .invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor")
            }
            after = id
        }
        return (limit, after)
    }

    func db<T>(_ context: KeybrakeRequestContext, _ body: () async throws -> T) async throws(KeybrakeError) -> T {
        do { return try await body() } catch let e as KeybrakeError { throw e } catch { throw DatabaseErrors.map(error, logger: context.logger) }
    }
}

/// JSON text already valid (from Postgres' jsonb), embedded as is.
struct RawJSON: Encodable {
    let text: String
    func encode(to encoder: any Encoder) throws {
        let value = try JSONDecoder().decode(JSONAny.self, from: Data(text.utf8))
        try value.encode(to: encoder)
    }
}

/// Any JSON value, decoded and re-encoded without a schema (numbers keep their decimal spelling).
enum JSONAny: Codable {
    case null, bool(Bool), number(Decimal), string(String), array([JSONAny]), object([String: JSONAny])
    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Decimal.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONAny].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONAny].self)) }
    }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}
