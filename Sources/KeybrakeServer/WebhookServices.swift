import HTTPLayer
import Logging
import ServiceLifecycle
import Storage
import Webhooks

/// Delivers webhooks on every replica (DESIGN §14): every `pollInterval` it takes what is due from the outbox
/// (WebhookDispatcher), and once a minute it writes `key.expiring` events and prunes the outbox. Started once the
/// replica is (the tables exist); a graceful shutdown cancels the attempts in flight — their rows are due again when
/// their lease runs out, on whichever replica is alive.
struct WebhookDeliveryService: Service {
    let dispatcher: WebhookDispatcher
    let transport: HTTPWebhookTransport
    let interval: Duration
    let drain: Drain
    let logger: Logger
    static let sweepEvery: Duration = .seconds(60)

    func run() async throws {
        await deliverUntilShutdown()
        try? await transport.shutdown()
    }

    func deliverUntilShutdown() async {
        guard await cancelWhenGracefulShutdown({ await drain.waitUntilStarted() }) else { return }
        var lastSweep = ContinuousClock.now - Self.sweepEvery
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let dispatcher = self.dispatcher, logger = self.logger
            do {
                if ContinuousClock.now - lastSweep >= Self.sweepEvery {
                    lastSweep = .now
                    try await cancelWhenGracefulShutdown { try await dispatcher.sweep(logger: logger) }
                }
                // A full batch means more may be due: go again at once.
                var n = 0
                repeat {
                    n = try await cancelWhenGracefulShutdown { try await dispatcher.runOnce(logger: logger) }
                } while n >= dispatcher.batchSize && !Task.isShuttingDownGracefully
            } catch {
                logger.debug("webhook delivery pass failed", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
            }
            let wait = interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
        }
    }
}
