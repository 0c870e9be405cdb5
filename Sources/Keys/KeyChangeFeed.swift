import Foundation
import KeybrakeCore
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Storage

/// This replica's side of acknowledged key changes (DESIGN §4): on a connection of its own it LISTENs for key
/// changes, registers in `replicas` with a lease, renews the lease every heartbeat, and for every change invalidates
/// the named keys in its `KeyDirectory` and then records the change as applied. The directory serves rows from
/// memory only while this connection works and the lease holds on the replica's own clock; any failure stops that
/// at once, and the next connection re-synchronises (empty memory, newest sequence number) before serving again.
public struct KeyChangeFeed: Sendable {
    public struct Settings: Sendable {
        /// How long a replica's word holds: an admin change waits at most this long for a replica that went silent.
        public var lease: Duration = .seconds(5)
        public var heartbeat: Duration = .seconds(1)
        /// Memory stops being served this long before the lease written to Postgres runs out (clock rates, scheduling).
        public var margin: Duration = .milliseconds(500)
        public init() {}
    }

    public static let channel = "kb_key_changes"

    let url: DatabaseURL
    let pool: DatabasePool
    let directory: KeyDirectory
    let settings: Settings
    let logger: Logger
    public let replicaId: String

    public init(url: DatabaseURL, pool: DatabasePool, directory: KeyDirectory, settings: Settings, logger: Logger) {
        self.url = url
        self.pool = pool
        self.directory = directory
        self.settings = settings
        self.logger = logger
        self.replicaId = "rep_" + Identifier.randomBase62(count: 16)
    }

    /// Runs until cancelled: one listening session after another, with a short pause after a failure. A loss is
    /// logged once; the failed attempts after it (Postgres down for a while) only at debug level, until a session
    /// works again.
    public func run() async {
        var pause = Duration.milliseconds(100)
        let lost = NIOLockedValueBox(false)
        while !Task.isCancelled {
            do {
                try await session {
                    if lost.withLockedValue({ was in defer { was = false }; return was }) { logger.info("key-change listener back") }
                }
                pause = .milliseconds(100)
            } catch is CancellationError {
                break
            } catch {
                let first = lost.withLockedValue { was in defer { was = true }; return !was }
                logger.log(level: first ? .warning : .debug, "key-change listener lost; serving keys from Postgres until it is back",
                           metadata: ["error": "\(String(describing: type(of: error)))"])
            }
            directory.stopServing()
            // Stopping: `leave()` below removes the row at once; one bounded write, not two, inside lifecycle's
            // cancellation bound.
            if Task.isCancelled { break }
            await giveUpLease()
            try? await Task.sleep(for: pause)
            // At least once a second: after a failover the new primary is found within a second of taking writes.
            pause = min(pause * 2, .seconds(1))
        }
        directory.stopServing()
        await leave()
    }

    func session(registered: @Sendable () -> Void = {}) async throws {
        let connection = try await PostgresConnection.connect(configuration: try url.connectionConfiguration(), id: 1, logger: logger)
        do {
            // The notification stream does not end when its task is cancelled (graceful shutdown cancels this
            // service); closing the connection ends it. Without this, a replica whose listener had lived through a
            // Postgres restart held SIGTERM until lifecycle's bound and then overran the cancellation bound.
            try await withTaskCancellationHandler {
            try await connection.listen(on: Self.channel) { notifications in
                let applied = NIOLockedValueBox<Int64>(0)
                let started = ContinuousClock.now
                let newest = try await Deadline.run(settings.lease) {
                var newest: Int64 = 0
                for try await seq in try await connection.query("""
                    INSERT INTO replicas (id, lease_until, applied_seq, backend_pid)
                    VALUES (\(replicaId), now() + \(settings.lease.milliseconds) * interval '1 millisecond',
                            (SELECT COALESCE(max(seq), 0) FROM key_changes), pg_backend_pid())
                    ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until, applied_seq = EXCLUDED.applied_seq,
                        backend_pid = EXCLUDED.backend_pid
                    RETURNING applied_seq
                    """, logger: logger).decode(Int64.self) { newest = seq }
                return newest
                }
                applied.withLockedValue { $0 = newest }
                directory.resynchronised(leaseUntil: started + settings.lease - settings.margin)
                registered()
                logger.debug("serving keys from memory", metadata: ["replica": "\(replicaId)", "seq": "\(newest)"])

                try await withThrowingTaskGroup(of: Void.self) { group in
                    // Each round trip under a deadline: a query sent on a connection Postgres has just closed (a
                    // failover) can be stranded in PostgresNIO and never answer; the session then ends and the next
                    // one connects to the new primary.
                    let limit = settings.heartbeat * 2
                    group.addTask {
                        for try await _ in notifications {
                            try await Deadline.run(limit) { try await catchUp(connection, applied: applied) }
                        }
                        throw ListenerClosed()
                    }
                    group.addTask {
                        var beats = 0
                        while true {
                            try await Task.sleep(for: settings.heartbeat)
                            let prune = beats % 60 == 0
                            do {
                                try await Deadline.run(limit) { try await heartbeat(connection, applied: applied, prune: prune) }
                            } catch {
                                // Ends the notification stream too, which a cancellation does not.
                                let closing: EventLoopFuture<Void> = connection.close()
                                _ = closing
                                throw error
                            }
                            beats += 1
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
            } onCancel: {
                let closing: EventLoopFuture<Void> = connection.close()
                _ = closing
            }
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    struct ListenerClosed: Error {}

    /// Applies every change after the last one applied, then says so (the admin request is waiting for that).
    func catchUp(_ connection: PostgresConnection, applied: NIOLockedValueBox<Int64>) async throws {
        let after = applied.withLockedValue { $0 }
        var last = after
        var ids: [String] = []
        for try await (seq, keyIds) in try await connection.query(
            "SELECT seq, key_ids FROM key_changes WHERE seq > \(after) ORDER BY seq", logger: logger
        ).decode((Int64, [String]).self) {
            last = max(last, seq)
            ids += keyIds
        }
        guard last > after else { return }
        directory.invalidate(ids)
        applied.withLockedValue { $0 = max($0, last) }
        try await connection.query("UPDATE replicas SET applied_seq = GREATEST(applied_seq, \(last)) WHERE id = \(replicaId)",
                                    logger: logger)
    }

    func heartbeat(_ connection: PostgresConnection, applied: NIOLockedValueBox<Int64>, prune: Bool) async throws {
        let sent = ContinuousClock.now
        var newest: Int64?
        for try await seq in try await connection.query("""
            UPDATE replicas SET lease_until = now() + \(settings.lease.milliseconds) * interval '1 millisecond'
            WHERE id = \(replicaId) RETURNING (SELECT COALESCE(max(seq), 0) FROM key_changes)
            """, logger: logger).decode(Int64.self) { newest = seq }
        // Our row was removed (pruned while we were stalled): start over with a fresh registration.
        guard let newest else { throw ListenerClosed() }
        directory.renewed(leaseUntil: sent + settings.lease - settings.margin)
        // A change whose notification has not arrived yet is applied now (notifications are only the fast path).
        if newest > applied.withLockedValue({ $0 }) { try await catchUp(connection, applied: applied) }
        if prune {
            try await connection.query("DELETE FROM replicas WHERE lease_until < now() - interval '1 hour'", logger: logger)
            try await connection.query("DELETE FROM key_changes WHERE created_at < now() - interval '1 hour'", logger: logger)
        }
    }

    /// Best effort, through the pool: an admin change need not wait out the lease of a replica that knows it stopped.
    /// Detached and deaf to cancellation (it runs while this task is being cancelled at shutdown, and must still
    /// reach Postgres) and bounded (Postgres may be the thing that is down; the lease runs out by itself).
    func giveUpLease() async {
        let pool = self.pool, id = replicaId, logger = self.logger
        _ = try? await Deadline.run(.seconds(1), hearsCancellation: false) {
            _ = try await pool.query("UPDATE replicas SET lease_until = now() WHERE id = \(id)", logger: logger)
        }
    }

    func leave() async {
        let pool = self.pool, id = replicaId, logger = self.logger
        _ = try? await Deadline.run(.seconds(1), hearsCancellation: false) {
            _ = try await pool.query("DELETE FROM replicas WHERE id = \(id)", logger: logger)
        }
    }
}

/// The admin side: after a key change commits, wait until every replica with a live lease has applied it (or its
/// lease ran out), so "revoked" means revoked everywhere when the answer arrives.
public struct KeyChangeAcknowledgements: Sendable {
    let client: DatabasePool
    let settings: KeyChangeFeed.Settings

    public init(client: DatabasePool, settings: KeyChangeFeed.Settings) {
        self.client = client
        self.settings = settings
    }

    public struct Result: Sendable, Equatable {
        /// Replicas with a live lease that applied the change.
        public var acknowledged: Int
        /// Replicas that had not applied it when the wait gave up (none unless a lease outlived the wait).
        public var pending: Int
        public init(acknowledged: Int, pending: Int) {
            self.acknowledged = acknowledged
            self.pending = pending
        }
    }

    public func wait(for seq: Int64, logger: Logger) async throws -> Result {
        // A replica that stops answering drops out when its lease ends: one lease plus a little is the longest wait.
        let deadline = ContinuousClock.now + settings.lease + .seconds(1)
        var pause = Duration.milliseconds(1)
        while true {
            var result = Result(acknowledged: 0, pending: 0)
            for try await (done, live) in try await client.query("""
                SELECT (count(*) FILTER (WHERE applied_seq >= \(seq)))::int, count(*)::int FROM replicas WHERE lease_until > now()
                """, logger: logger).decode((Int, Int).self) {
                result = Result(acknowledged: done, pending: live - done)
            }
            if result.pending == 0 || ContinuousClock.now > deadline { return result }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(20))
        }
    }
}
