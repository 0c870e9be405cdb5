import Alerts
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore

/// /dashboard/webhooks: the tenant's webhook endpoints with their recent deliveries; add one (its signing secret
/// shown once), send a test ping, rotate the secret. The admin API's own rules apply (WebhooksController).
extension DashboardController {
    static let deliveriesShown = 10

    func webhooksPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        return try await renderWebhooks(session: session, flash: notice(request), status: .ok, context: context)
    }

    func renderWebhooks(session: DashboardSession, flash: Flash?, status: HTTPResponse.Status, context: KeybrakeRequestContext,
                        url: String = "", description: String = "") async throws -> Response {
        guard let webhooks else { throw KeybrakeError.notFound("page") }
        let endpoints = try await db(context) {
            try await webhooks.repository.list(tenantId: session.tenantId, after: nil, limit: WebhooksController.maxEndpointsPerTenant,
                                               logger: context.logger)
        } ?? []
        var views: [EndpointView] = []
        for e in endpoints {
            let deliveries = try await db(context) {
                try await webhooks.repository.deliveries(endpointId: e.id, tenantId: session.tenantId, after: nil, limit: Self.deliveriesShown,
                                                         logger: context.logger)
            } ?? []
            let base = "/dashboard/webhooks/" + pathSegment(e.id)
            views.append(EndpointView(
                id: e.id, url: e.url, description: e.description, events: e.events.isEmpty ? "all events" : e.events.joined(separator: ", "),
                format: e.format, enabled: e.enabled, disabledReason: e.disabledReason,
                failingSince: e.failingSince.map(Format.time), rotationEnds: e.previousSecretExpiresAt.map(Format.time),
                testAction: base + "/test", rotateAction: base + "/rotate",
                deliveries: deliveries.map { d in
                    DeliveryRow(eventId: d.eventId, type: d.eventType, status: d.status, attempts: d.attempts,
                                last: d.lastStatus.map(String.init) ?? (d.lastError ?? "—"), latency: d.lastLatencyMs.map { "\($0) ms" } ?? "—",
                                next: d.status == "pending" ? d.nextAttemptAt.map(Format.time) : nil,
                                rowClass: d.status == "failed" ? "over" : (d.status == "pending" && d.attempts > 0 ? "near" : ""))
                }))
        }
        return renderer.render("webhooks", WebhooksView(
            chrome: chrome(session, .webhooks), flash: flash, endpoints: views, url: url, description: description,
            eventTypes: EventType.subscribable, canAdd: endpoints.count < WebhooksController.maxEndpointsPerTenant
        ), status: status)
    }

    func createWebhook(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, form) = try await verifiedForm(request, context)
        guard let webhooks else { throw KeybrakeError.notFound("page") }
        var fields: [String: JSONValue] = ["url": .string(form["url"] ?? "")]
        if let d = form.nonEmpty("description") { fields["description"] = .string(d) }
        let events = EventType.subscribable.filter { form["event_" + $0] != nil }
        fields["events"] = .array(events.map(JSONValue.string))
        if let f = form.nonEmpty("format") { fields["format"] = .string(f) }
        do {
            let (endpoint, secret) = try await webhooks.createEndpoint(tenantId: session.tenantId, json: JSONObjectReader(fields), context: context)
            return renderer.render("webhook_secret", WebhookSecretView(chrome: chrome(session, .webhooks), heading: "Webhook endpoint added",
                                                                      url: endpoint.url, secret: secret), status: .created)
        } catch let error as KeybrakeError where error.status < 500 {
            return try await renderWebhooks(session: session, flash: .error(error.message), status: .badRequest, context: context,
                                            url: form["url"] ?? "", description: form["description"] ?? "")
        }
    }

    func owned(_ session: DashboardSession, _ context: KeybrakeRequestContext) async throws -> WebhookEndpoint {
        guard let webhooks, let e = try await db(context, {
            try await webhooks.repository.endpoint(id: context.parameters.get("id") ?? "", tenantId: session.tenantId, logger: context.logger)
        }) else { throw KeybrakeError.notFound("webhook endpoint") }
        return e
    }

    func testWebhook(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, _) = try await verifiedForm(request, context)
        let endpoint = try await owned(session, context)
        guard endpoint.enabled else {
            return try await renderWebhooks(session: session, flash: .error("That endpoint is disabled; enable it before testing."),
                                            status: .conflict, context: context)
        }
        _ = try await db(context) { try await webhooks?.repository.ping(endpointId: endpoint.id, tenantId: session.tenantId, logger: context.logger) }
        return Page.redirect("/dashboard/webhooks?notice=webhook_test_queued")
    }

    func rotateWebhook(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, _) = try await verifiedForm(request, context)
        let endpoint = try await owned(session, context)
        guard let webhooks else { throw KeybrakeError.notFound("page") }
        let (saved, secret) = try await webhooks.rotateSecret(endpoint, context: context)
        return renderer.render("webhook_secret", WebhookSecretView(
            chrome: chrome(session, .webhooks), heading: "Signing secret rotated", url: saved.url, secret: secret,
            note: "The previous secret keeps signing beside this one until \(saved.previousSecretExpiresAt.map(Format.time) ?? "24 h from now")."))
    }
}
