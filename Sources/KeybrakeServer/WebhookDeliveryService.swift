import Alerts
import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import ServiceLifecycle
import Storage
import Vault

/// Delivers the alert outbox on every replica (DESIGN §14): every poll interval it sends what is due
/// (`WebhookDeliverer.runOnce`), and once a minute it writes `key.expiring` events and prunes the outbox. Replicas
/// share the work through `FOR UPDATE SKIP LOCKED`; a slow receiver holds only its own delivery.
struct WebhookDeliveryService: Service {
    let deliverer: WebhookDeliverer
    let transport: HTTPWebhookTransport
    let interval: Duration
    let clock: any KeybrakeCore.Clock
    let logger: Logger

    init(config: AppConfiguration, postgres: PostgresClient, clock: any KeybrakeCore.Clock, logger: Logger) {
        let transport = HTTPWebhookTransport(policy: WebhookURLPolicy(allowPrivate: config.webhooks.allowPrivate))
        self.transport = transport
        self.deliverer = WebhookDeliverer(client: postgres, sealer: CredentialSealer(ring: config.masterKeys), transport: transport)
        self.interval = config.webhooks.pollInterval
        self.clock = clock
        self.logger = logger
    }

    func run() async throws {
        var lastSweep = ContinuousClock.now - .seconds(3600)
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let wait = interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            if Task.isCancelled || Task.isShuttingDownGracefully { break }
            do {
                if ContinuousClock.now - lastSweep >= .seconds(60) {
                    lastSweep = ContinuousClock.now
                    try await deliverer.sweep(now: clock.now(), logger: logger)
                }
                // Keep going while full batches come back (a backlog), then wait for the next tick.
                while try await deliverer.runOnce(now: clock.now(), logger: logger) >= deliverer.batchSize,
                      !Task.isShuttingDownGracefully {}
            } catch {
                logger.debug("webhook delivery pass failed", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
            }
        }
        try? await transport.shutdown()
    }
}
