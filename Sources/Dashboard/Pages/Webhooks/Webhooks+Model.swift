struct DeliveryRow {
    let eventId: String
    let type: String
    let status: String
    let attempts: Int
    let last: String
    let latency: String
    let next: String?
    let rowClass: String
}

struct EndpointView {
    let id: String
    let url: String
    let description: String?
    let events: String
    let format: String
    let enabled: Bool
    let disabledReason: String?
    let failingSince: String?
    let rotationEnds: String?
    let testAction: String
    let rotateAction: String
    let deliveries: [DeliveryRow]
}

struct WebhooksView {
    let chrome: Chrome
    let flash: Flash?
    let endpoints: [EndpointView]
    let url: String
    let description: String
    let eventTypes: [String]
    let canAdd: Bool
}

struct WebhookSecretView {
    let chrome: Chrome
    let heading: String
    let url: String
    let secret: String
    var note: String? = nil
}
