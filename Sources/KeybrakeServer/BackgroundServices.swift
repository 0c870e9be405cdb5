import Audit
import Foundation
import HTTPLayer
import Keys
import Logging
import Proxy
import ServiceLifecycle
import Storage
import Webhooks

// The services that run beside the HTTP server (`Services.backgroundServices` builds them in start order).

/// Marks the replica as draining when graceful shutdown reaches it without a signal (in-process shutdowns). Under
/// `serve`, `StopSignalService` marks it the moment SIGTERM arrives. Graceful shutdown reaches the services in
/// reverse order, the HTTP server first (it stops accepting connections and lets the requests in flight finish;
/// Postgres and the forwarder stop after it, so those requests still settle and write their audit rows).
struct DrainService: Service {
    let drain: Drain

    func run() async throws {
        // A service that returns early stops the whole group: wait for graceful shutdown to reach this one.
        try? await gracefulShutdown()
        drain.start()
    }
}

/// Writes the unverified attempts of the last interval as one audit row per key (DESIGN §4), and once more at
/// shutdown so a replica that stops loses none it could write — under a deadline, so a database that is down
/// cannot hold the shutdown (issue 27).
struct UnverifiedAttemptsService: Service {
    let attempts: UnverifiedAttempts
    let interval: Duration
    let logger: Logger
    static let finalFlushDeadline: Duration = .seconds(2)

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let wait = interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            await flush()
        }
    }

    func flush() async {
        let attempts = self.attempts, logger = self.logger
        do { try await Deadline.run(Self.finalFlushDeadline, { try await attempts.flush(logger: logger) }) } catch {
            logger.warning("could not write unverified-attempt summaries yet", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
        }
    }
}

/// Listens for key changes while the application runs, from the moment the replica has started (it needs the
/// schema's tables: started earlier it would fail and retry, a warning each time, until `migrate` has run).
struct KeyChangeFeedService: Service {
    let feed: KeyChangeFeed
    let drain: Drain
    func run() async throws {
        await cancelWhenGracefulShutdown {
            guard await drain.waitUntilStarted() else { return }
            await feed.run()
        }
    }
}

/// Shuts the shared HTTP client down with the application.
struct ForwarderService: Service {
    let forwarder: Forwarder
    func run() async throws {
        try? await gracefulShutdown()
        try await forwarder.shutdown()
    }
}

/// Turns the expired leases of requests whose replica died into unknown outcomes, on every replica, every few
/// seconds (DESIGN §7 Leases): no 409 and no phantom hold outlives a crashed request by more than its lease.
struct LeaseSweepService: Service {
    let ledger: SpendLedger
    let interval: Duration
    let drain: Drain
    let logger: Logger

    func run() async throws {
        guard await cancelWhenGracefulShutdown({ await drain.waitUntilStarted() }) else { return }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let wait = interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
            if Task.isCancelled || Task.isShuttingDownGracefully { return }
            do {
                // Abandoned on graceful shutdown: with Postgres down, PostgresNIO's pool keeps a waiting query
                // until its circuit breaker trips (about a minute, and again after it), and the pool itself is shut
                // down last, after this service — a sweep waiting on it held shutdown for ever (issue 27); with the
                // network to Postgres cut, a query already sent never answers at all.
                let ledger = self.ledger, logger = self.logger
                let expired = try await abandonedOnGracefulShutdown { try await ledger.expireLeases(logger: logger) }
                if expired > 0 { logger.warning("expired the leases of requests whose replica died", metadata: ["reservations": "\(expired)"]) }
            } catch {
                logger.debug("lease sweep failed", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
            }
        }
    }
}

/// Delivers webhooks on every replica (DESIGN §14): every `pollInterval` it takes what is due from the outbox
/// (WebhookDispatcher), and once a minute it writes `key.expiring` events and prunes the outbox. Started once the
/// replica is (the tables exist); a graceful shutdown cancels the pass in flight and waits for its attempts to stop
/// (the transport is shut down after them; its claim query is abandoned, see `runOnce`) — their rows are due again
/// when their lease runs out, on whichever replica is alive.
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
                    try await abandonedOnGracefulShutdown { try await dispatcher.sweep(logger: logger) }
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

/// Keeps the current and next months' audit partitions in place (daily; idempotent), so rows land in
/// monthly partitions that `keybrake audit prune` can drop whole.
struct AuditPartitionService: Service {
    let repository: AuditRepository
    let drain: Drain
    let logger: Logger

    func run() async throws {
        // Once the replica has started (the tables exist), then once an hour: partitions ahead, and the usage of the
        // days that closed since (each day is rolled up once, by whichever replica comes first).
        guard await cancelWhenGracefulShutdown({ await drain.waitUntilStarted() }) else { return }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            var pause = Duration.seconds(3_600)
            // Abandoned on graceful shutdown, for the reasons given in LeaseSweepService.
            let repository = self.repository, logger = self.logger
            do { try await abandonedOnGracefulShutdown { try await repository.ensurePartitions(logger: logger) } } catch {
                logger.warning("could not create audit partitions", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
                pause = .seconds(60)
            }
            do { try await abandonedOnGracefulShutdown { try await repository.rollUpUsage(logger: logger) } } catch {
                logger.warning("could not roll up usage by day", metadata: ["error": "\(DatabaseErrors.map(error, logger: logger).code)"])
                pause = .seconds(60)
            }
            let wait = pause
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
        }
    }
}
