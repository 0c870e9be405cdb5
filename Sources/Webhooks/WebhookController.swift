import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage

/// `/v1/webhook-endpoints` (create, list, show, change, delete, rotate the secret, send a test, list deliveries) and
/// `/v1/events` (list, show, redeliver). DESIGN §14.
public struct WebhookController: Sendable {
    let repository: WebhookRepository
    let reads: WebhookReads
    let urls: WebhookURLPolicy
    let clock: any KeybrakeCore.Clock

    public static let defaultPageSize = 50
    public static let maxPageSize = 100

    public init(repository: WebhookRepository, reads: WebhookReads, urls: WebhookURLPolicy, clock: any KeybrakeCore.Clock) {
        self.repository = repository
        self.reads = reads
        self.urls = urls
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
        group.post("/events/:id/redeliver") { request, context in try await self.redeliver(request, context) }
    }

    // MARK: - Shapes

    struct EndpointBody: Encodable {
        let id: String
        let url: String
        /// null: every event type.
        @NullEncoded var events: [String]?
        let description: String
        let enabled: Bool
        let format: String
        /// Set when Keybrake disabled the endpoint (failing for 5 days).
        @NullEncoded var disabledReason: String?
        @NullEncoded var failingSince: Date?
        /// Until then the previous secret signs beside the current one (a second `v1,` signature).
        @NullEncoded var previousSecretExpiresAt: Date?
        let createdAt: Date
        let updatedAt: Date
    }

    func body(_ e: WebhookEndpoint) -> EndpointBody {
        let now = clock.now()
        return EndpointBody(id: e.id, url: e.url, events: e.events, description: e.description, enabled: e.enabled, format: e.format.rawValue,
                            disabledReason: e.disabledReason, failingSince: e.failingSince,
                            previousSecretExpiresAt: e.previousSecretExpiresAt.flatMap { $0 > now ? $0 : nil },
                            createdAt: e.createdAt, updatedAt: e.updatedAt)
    }

    struct EventBody: Encodable {
        let id: String
        let type: String
        let createdAt: Date
        let data: JSONValue
    }

    static func body(_ e: WebhookEvent) -> EventBody {
        let data = (try? JSONDecoder().decode(JSONValue.self, from: Data(e.dataJSON.utf8))) ?? .object([:])
        return EventBody(id: e.id, type: e.type, createdAt: e.createdAt, data: data)
    }

    // MARK: - Parsing

    static let fields: Set<String> = ["url", "events", "description", "enabled", "format"]

    func parse(_ json: JSONObjectReader, creating: Bool) throws(KeybrakeError) -> EndpointChange {
        try json.rejectUnknown(allowed: Self.fields)
        var c = EndpointChange()
        if creating || json.has("url") {
            guard let url = try json.string("url", required: true, maxLength: WebhookURLPolicy.maxLength) else {
                throw .invalidRequest("url is required.", field: "url")
            }
            _ = try urls.check(url)
            c.url = url
        }
        if json.has("events") {
            if let events = try json.stringArray("events") {
                guard !events.isEmpty else { throw .invalidRequest("events must name at least one event type, or be null for all.", field: "events") }
                for event in events where !WebhookEventType.all.contains(event) {
                    throw .invalidRequest("'\(event.prefix(60))' is not an event type; use \(WebhookEventType.all.joined(separator: ", ")).", field: "events")
                }
                c.events = .some(Array(Set(events)).sorted())
            } else {
                c.events = .some(nil)
            }
        }
        if json.has("description") { c.description = try json.displayText("description", maxLength: 500) ?? "" }
        if json.has("enabled") {
            guard let enabled = try json.bool("enabled") else { throw .invalidRequest("enabled cannot be null.", field: "enabled") }
            c.enabled = enabled
        }
        if json.has("format") {
            guard let name = try json.string("format", maxLength: 20), let format = WebhookEndpoint.Format(rawValue: name) else {
                throw .invalidRequest("format must be \"standard\" or \"slack\".", field: "format")
            }
            c.format = format
        }
        return c
    }

    static func page(_ request: Request, cursorKind: String, idPrefix: String) throws(KeybrakeError) -> (limit: Int, after: String?) {
        let query = request.uri.queryParameters
        var limit = defaultPageSize
        if let raw = query["limit"] {
            guard let n = Int(String(raw)), (1...maxPageSize).contains(n) else {
                throw .invalidRequest("limit must be a whole number from 1 to \(maxPageSize).", field: "limit")
            }
            limit = n
        }
        guard let raw = query["cursor"], !raw.isEmpty else { return (limit, nil) }
        guard let id = PageCursor.decode(String(raw), kind: cursorKind, idPrefix: idPrefix) else {
            throw .invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor")
        }
        return (limit, id)
    }


    // MARK: - Endpoints

    func create(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let c = try parse(try await JSONObjectReader.decode(request, context: context), creating: true)
        let secret = WebhookSigner.newSecret()
        let endpoint = try await db(context) {
            try await repository.create(id: "whe_" + Identifier.randomBase62(count: 20), tenantId: admin.tenantId, url: c.url ?? "",
                                        events: c.events ?? nil, description: c.description ?? "", enabled: c.enabled ?? true,
                                        format: c.format ?? .standard, secret: secret, logger: context.logger)
        }
        struct Created: Encodable { let endpoint: EndpointBody; let secret: String }
        return try JSONResponse.make(.created, Created(endpoint: body(endpoint), secret: secret))
    }

    func list(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let (limit, after) = try Self.page(request, cursorKind: "we1", idPrefix: "whe_")
        guard let endpoints = try await db(context, {
            try await repository.list(tenantId: admin.tenantId, after: after, limit: limit + 1, logger: context.logger)
        }) else { throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor") }
        let page = Array(endpoints.prefix(limit))
        struct Page: Encodable { let data: [EndpointBody]; @NullEncoded var nextCursor: String? }
        return try JSONResponse.make(.ok, Page(data: page.map(body),
                                               nextCursor: endpoints.count > limit ? page.last.map { PageCursor.encode($0.id, kind: "we1") } : nil))
    }

    struct Shown: Encodable { let endpoint: EndpointBody }

    func show(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        guard let endpoint = try await db(context, { try await repository.endpoint(id: id, tenantId: admin.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("webhook endpoint")
        }
        return try JSONResponse.make(.ok, Shown(endpoint: body(endpoint)))
    }

    func update(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        let c = try parse(try await JSONObjectReader.decode(request, context: context), creating: false)
        guard let endpoint = try await db(context, { try await repository.update(id: id, tenantId: admin.tenantId, c, logger: context.logger) }) else {
            throw KeybrakeError.notFound("webhook endpoint")
        }
        return try JSONResponse.make(.ok, Shown(endpoint: body(endpoint)))
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
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        let secret = WebhookSigner.newSecret()
        let now = clock.now()
        guard let endpoint = try await db(context, {
            try await repository.rotate(id: id, tenantId: admin.tenantId, secret: secret, now: now, logger: context.logger)
        }) else { throw KeybrakeError.notFound("webhook endpoint") }
        struct Rotated: Encodable { let endpoint: EndpointBody; let secret: String }
        return try JSONResponse.make(.ok, Rotated(endpoint: body(endpoint), secret: secret))
    }

    func test(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        guard let eventId = try await db(context, { try await repository.ping(endpointId: id, tenantId: admin.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("webhook endpoint")
        }
        struct Queued: Encodable { let eventId: String; let type: String }
        return try JSONResponse.make(.accepted, Queued(eventId: eventId, type: "ping"))
    }

    func deliveries(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        let (limit, after) = try Self.page(request, cursorKind: "wd1", idPrefix: "whd_")
        guard try await db(context, { try await repository.endpoint(id: id, tenantId: admin.tenantId, logger: context.logger) }) != nil else {
            throw KeybrakeError.notFound("webhook endpoint")
        }
        guard let rows = try await db(context, {
            try await reads.deliveries(endpointId: id, tenantId: admin.tenantId, after: after, limit: limit + 1, logger: context.logger)
        }) else { throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor") }
        struct AttemptBody: Encodable {
            let attempt: Int
            @NullEncoded var status: Int?
            @NullEncoded var error: String?
            let latencyMs: Double
            @NullEncoded var nextAttemptAt: Date?
            let at: Date
        }
        struct DeliveryBody: Encodable {
            let id: String
            let eventId: String
            let eventType: String
            let state: String
            @NullEncoded var nextAttemptAt: Date?
            let createdAt: Date
            let attempts: [AttemptBody]
        }
        struct Page: Encodable { let data: [DeliveryBody]; @NullEncoded var nextCursor: String? }
        let page = Array(rows.prefix(limit))
        return try JSONResponse.make(.ok, Page(data: page.map { d in
            DeliveryBody(id: d.id, eventId: d.eventId, eventType: d.eventType, state: d.state, nextAttemptAt: d.nextAttemptAt, createdAt: d.createdAt,
                         attempts: d.attempts.map {
                             AttemptBody(attempt: $0.attempt, status: $0.status, error: $0.error, latencyMs: Double($0.latencyMicros) / 1000,
                                         nextAttemptAt: $0.nextAttemptAt, at: $0.at)
                         })
        }, nextCursor: rows.count > limit ? page.last.map { PageCursor.encode($0.id, kind: "wd1") } : nil))
    }

    // MARK: - Events

    func events(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let (limit, after) = try Self.page(request, cursorKind: "ev1", idPrefix: "evt_")
        let query = request.uri.queryParameters
        var filter = EventFilter()
        if let type = query["type"].map(String.init), !type.isEmpty {
            guard WebhookEventType.all.contains(type) else {
                throw KeybrakeError.invalidRequest("type must be one of \(WebhookEventType.all.joined(separator: ", ")).", field: "type")
            }
            filter.type = type
        }
        if let key = query["key_id"].map(String.init), !key.isEmpty {
            guard key.count <= 100 else { throw KeybrakeError.invalidRequest("key_id is too long.", field: "key_id") }
            filter.keyId = key
        }
        for name in ["from", "to"] {
            guard let raw = query[Substring(name)].map(String.init), !raw.isEmpty else { continue }
            guard let date = RFC3339.parse(raw) else {
                throw KeybrakeError.invalidRequest("\(name) must be an RFC 3339 timestamp such as 2026-12-07T00:00:00Z.", field: name)
            }
            if name == "from" { filter.from = date } else { filter.to = date }
        }
        let f = filter
        guard let rows = try await db(context, {
            try await reads.events(tenantId: admin.tenantId, filter: f, after: after, limit: limit + 1, logger: context.logger)
        }) else { throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor") }
        let page = Array(rows.prefix(limit))
        struct Page: Encodable { let data: [EventBody]; @NullEncoded var nextCursor: String? }
        return try JSONResponse.make(.ok, Page(data: page.map(Self.body),
                                               nextCursor: rows.count > limit ? page.last.map { PageCursor.encode($0.id, kind: "ev1") } : nil))
    }

    func event(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        guard let event = try await db(context, { try await reads.event(id: id, tenantId: admin.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("event")
        }
        struct ShownEvent: Encodable { let event: EventBody }
        return try JSONResponse.make(.ok, ShownEvent(event: Self.body(event)))
    }

    func redeliver(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        var endpointId: String?
        if request.headers[.contentLength].map({ $0 != "0" }) ?? false || request.headers[.contentType] != nil {
            let json = try await JSONObjectReader.decode(request, context: context)
            try json.rejectUnknown(allowed: ["endpoint_id"])
            endpointId = try json.string("endpoint_id", maxLength: 100)
        }
        let target = endpointId
        guard let endpoints = try await db(context, {
            try await repository.redeliver(eventId: id, tenantId: admin.tenantId, endpointId: target, logger: context.logger)
        }) else { throw KeybrakeError.notFound("event") }
        if let target, !endpoints.contains(target) { throw KeybrakeError.notFound("webhook endpoint") }
        struct Queued: Encodable { let eventId: String; let endpointIds: [String] }
        return try JSONResponse.make(.accepted, Queued(eventId: id, endpointIds: endpoints))
    }
}
