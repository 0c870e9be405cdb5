import Alerts
import HTTPLayer
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
    /// Opens once the database is ready (the outbox's tables migrated).
    let drain: Drain
    let logger: Logger

    init(config: AppConfiguration, postgres: PostgresClient, clock: any KeybrakeCore.Clock, drain: Drain, logger: Logger) {
        self.drain = drain
        let transport = HTTPWebhookTransport(policy: WebhookURLPolicy(allowPrivate: config.webhooks.allowPrivate))
        self.transport = transport
        self.deliverer = WebhookDeliverer(client: postgres, sealer: CredentialSealer(ring: config.masterKeys), transport: transport)
        self.interval = config.webhooks.pollInterval
        self.clock = clock
        self.logger = logger
    }

    /// Graceful shutdown cancels the pass in progress (a query waiting for a connection while Postgres restarts, an
    /// attempt waiting for a receiver): a cut attempt stays claimed and is retried when its claim runs out, so
    /// nothing is lost, and SIGTERM is never held up by a receiver or by the pool.
    func run() async throws {
        if await cancelWhenGracefulShutdown({ await drain.waitUntilStarted() }) {
            await cancelWhenGracefulShutdown { await self.loop() }
        }
        try? await transport.shutdown()
    }

    func loop() async {
        var lastSweep = ContinuousClock.now - .seconds(3600)
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            do {
                if ContinuousClock.now - lastSweep >= .seconds(60) {
                    lastSweep = ContinuousClock.now
                    try await deliverer.sweep(now: clock.now(), logger: logger)
                }
                // Keep going while full batches come back (a backlog), then wait for the next tick.
                while try await deliverer.runOnce(now: clock.now(), logger: logger) >= deliverer.batchSize, !Task.isCancelled {}
            } catch {
                if Task.isCancelled { return }
                logger.debug("webhook delivery pass failed", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
            }
        }
    }
}
