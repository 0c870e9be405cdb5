import Foundation
import Webhooks

/// What the webhook pages need from the Webhooks module (built by the composition root).
public struct DashboardWebhooks: Sendable {
    let repository: WebhookRepository
    let reads: WebhookReads
    let urls: WebhookURLPolicy
    public init(repository: WebhookRepository, reads: WebhookReads, urls: WebhookURLPolicy) {
        self.repository = repository
        self.reads = reads
        self.urls = urls
    }
}

struct WebhookRow {
    let id: String
    let href: String
    let url: String
    let events: String
    let format: String
    let state: String
    let disabledReason: String?
    let failingSince: String?
    let description: String
}

struct WebhookFormView {
    var url = ""
    var description = ""
    var slack = false
    let eventTypes = WebhookEventType.all.filter { $0 != "ping" }
}

struct WebhooksView {
    let chrome: Chrome
    let flash: Flash?
    let endpoints: [WebhookRow]
    let form: WebhookFormView
}

struct DeliveryRow {
    let id: String
    let eventId: String
    let eventType: String
    let state: String
    let attempts: Int
    let lastResult: String
    let latency: String
    let next: String
    let created: String
}

struct WebhookView {
    let chrome: Chrome
    let flash: Flash?
    let endpoint: WebhookRow
    let deliveries: [DeliveryRow]
    let testAction: String
    let rotateAction: String
}

struct WebhookSecretView {
    let chrome: Chrome
    let heading: String
    let url: String
    let secret: String
    let href: String
}
