import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Webhooks

/// Webhook endpoints (budget alerts): list and add, and per endpoint its deliveries, a test ping and secret rotation.
/// The same repository and rules as `/v1/webhook-endpoints`.
extension DashboardController {
    func webhooksPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        return try await renderWebhooks(session: session, flash: notice(request), form: WebhookFormView(), status: .ok, context: context)
    }

    func renderWebhooks(session: DashboardSession, flash: Flash?, form: WebhookFormView, status: HTTPResponse.Status,
                        context: KeybrakeRequestContext) async throws -> Response {
        let endpoints = try await db(context) {
            try await webhooks.repository.list(tenantId: session.tenantId, after: nil, limit: 50, logger: context.logger) ?? []
        }
        return renderer.render("webhooks", WebhooksView(chrome: chrome(session, .webhooks), flash: flash,
                                                        endpoints: endpoints.map(Self.row), form: form), status: status)
    }

    static func row(_ e: WebhookEndpoint) -> WebhookRow {
        WebhookRow(id: e.id, href: "/dashboard/webhooks/" + pathSegment(e.id), url: e.url,
                   events: e.events?.joined(separator: ", ") ?? "all events", format: e.format.rawValue,
                   state: e.enabled ? "enabled" : "disabled", disabledReason: e.disabledReason,
                   failingSince: e.failingSince.map(Format.time), description: e.description)
    }

    func createWebhook(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, form) = try await verifiedForm(request, context)
        let url = (form["url"] ?? "").trimmingCharacters(in: .whitespaces)
        let events = WebhookEventType.all.filter { form["ev_" + $0] != nil }
        let values = WebhookFormView(url: url, description: form["description"] ?? "", slack: form["format"] == "slack")
        do {
            _ = try webhooks.urls.check(url)
            if let refusal = DisplayText.refusal(values.description, field: "description") { throw refusal }
        } catch let error as KeybrakeError {
            return try await renderWebhooks(session: session, flash: .error(error.message), form: values, status: .badRequest, context: context)
        }
        let secret = WebhookSigner.newSecret()
        let endpoint = try await db(context) {
            try await webhooks.repository.create(id: "whe_" + Identifier.randomBase62(count: 20), tenantId: session.tenantId, url: url,
                                                 events: events.isEmpty ? nil : events, description: String(values.description.prefix(500)),
                                                 enabled: true, format: values.slack ? .slack : .standard, secret: secret, logger: context.logger)
        }
        return renderer.render("webhook_secret", WebhookSecretView(chrome: chrome(session, .webhooks), heading: "Endpoint added",
                                                                   url: endpoint.url, secret: secret, href: Self.row(endpoint).href))
    }

    func webhookPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let id = context.parameters.get("id") ?? ""
        guard let endpoint = try await db(context, { try await webhooks.repository.endpoint(id: id, tenantId: session.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("webhook endpoint")
        }
        let deliveries = try await db(context) {
            try await webhooks.reads.deliveries(endpointId: id, tenantId: session.tenantId, after: nil, limit: 50, logger: context.logger) ?? []
        }
        let row = Self.row(endpoint)
        return renderer.render("webhook", WebhookView(
            chrome: chrome(session, .webhooks), flash: notice(request), endpoint: row,
            deliveries: deliveries.map { d in
                let last = d.attempts.last
                return DeliveryRow(id: d.id, eventId: d.eventId, eventType: d.eventType, state: d.state, attempts: d.attempts.count,
                                   lastResult: last.map { $0.status.map { "HTTP \($0)" } ?? ($0.error ?? "no answer") } ?? "not tried yet",
                                   latency: last.map { String(format: "%.1f ms", Double($0.latencyMicros) / 1000) } ?? "",
                                   next: d.nextAttemptAt.map(Format.time) ?? "—", created: Format.time(d.createdAt))
            },
            testAction: row.href + "/test", rotateAction: row.href + "/rotate"))
    }

    func testWebhook(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, _) = try await verifiedForm(request, context)
        let id = context.parameters.get("id") ?? ""
        guard try await db(context, { try await webhooks.repository.ping(endpointId: id, tenantId: session.tenantId, logger: context.logger) }) != nil else {
            throw KeybrakeError.notFound("webhook endpoint")
        }
        return Page.redirect("/dashboard/webhooks/" + pathSegment(id) + "?notice=ping_queued")
    }

    func rotateWebhook(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, _) = try await verifiedForm(request, context)
        let id = context.parameters.get("id") ?? ""
        let secret = WebhookSigner.newSecret()
        let now = clock.now()
        guard let endpoint = try await db(context, {
            try await webhooks.repository.rotate(id: id, tenantId: session.tenantId, secret: secret, now: now, logger: context.logger)
        }) else { throw KeybrakeError.notFound("webhook endpoint") }
        return renderer.render("webhook_secret", WebhookSecretView(chrome: chrome(session, .webhooks), heading: "Secret rotated",
                                                                   url: endpoint.url, secret: secret, href: Self.row(endpoint).href))
    }
}
