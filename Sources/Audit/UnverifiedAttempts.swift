import Foundation
import KeybrakeCore
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Storage

/// Attempts with a real key's id whose token was not proven: a wrong secret, a client cut off after too many, no
/// core to hash on (DESIGN §4 "Knowing a key id is not power over the key"). Anyone may know a key id, so these are
/// never audited one row each into the key's tenant — a stranger could fill its log. They are counted here, in
/// memory, and `flush` (every minute, `UnverifiedAttemptsService`) writes one summary row per key
/// (`error_code` `unverified_attempts`, `attempts` = how many, the last attempt's method and path).
public final class UnverifiedAttempts: Sendable {
    public struct Attempt: Sendable {
        public var tenantId: String
        public var keyId: String
        public var keyLabel: String
        public var vendor: String
        public var method: String
        public var path: String

        public init(tenantId: String, keyId: String, keyLabel: String, vendor: String, method: String, path: String) {
            self.tenantId = tenantId
            self.keyId = keyId
            self.keyLabel = keyLabel
            self.vendor = vendor
            self.method = method
            self.path = String(path.prefix(512))
        }
    }

    struct Summary {
        var last: Attempt
        var count: Int
    }

    public static let errorCode = "unverified_attempts"

    let client: DatabasePool
    /// Keys summarised at once; past it, attempts on further keys are only logged (memory stays bounded).
    let maxKeys: Int
    let pending = NIOLockedValueBox([String: Summary]())

    public init(client: DatabasePool, maxKeys: Int = 100_000) {
        self.client = client
        self.maxKeys = maxKeys
    }

    /// Counts one attempt; nothing is written until the next flush.
    public func record(_ attempt: Attempt) {
        pending.withLockedValue { pending in
            if var summary = pending[attempt.keyId] {
                summary.last = attempt
                summary.count += 1
                pending[attempt.keyId] = summary
            } else if pending.count < maxKeys {
                pending[attempt.keyId] = Summary(last: attempt, count: 1)
            }
        }
    }

    /// Writes one row per key with attempts since the last flush; returns how many. On failure the counts are kept
    /// for the next flush.
    @discardableResult
    public func flush(logger: Logger) async throws -> Int {
        let batch = pending.withLockedValue { pending -> [Summary] in
            defer { pending.removeAll(keepingCapacity: true) }
            return Array(pending.values)
        }
        guard !batch.isEmpty else { return 0 }
        let ids = batch.map { _ in Identifier.make("aud") }
        let tenants = batch.map(\.last.tenantId), keys = batch.map(\.last.keyId), labels = batch.map(\.last.keyLabel)
        let vendors = batch.map(\.last.vendor), methods = batch.map(\.last.method), paths = batch.map(\.last.path)
        let counts = batch.map { Int64($0.count) }
        do {
            try await client.query("""
                INSERT INTO audit_events (id, tenant_id, key_id, key_label, vendor, method, path, decision, error_code, attempts, created_at)
                SELECT id, tenant_id, key_id, key_label, vendor, method, path, 'denied', \(Self.errorCode), attempts, now()
                FROM unnest(\(ids)::text[], \(tenants)::text[], \(keys)::text[], \(labels)::text[], \(vendors)::text[],
                            \(methods)::text[], \(paths)::text[], \(counts)::int8[])
                     AS u(id, tenant_id, key_id, key_label, vendor, method, path, attempts)
                """, logger: logger)
        } catch {
            pending.withLockedValue { pending in
                for summary in batch {
                    if var current = pending[summary.last.keyId] {
                        current.count += summary.count
                        pending[summary.last.keyId] = current
                    } else {
                        pending[summary.last.keyId] = summary
                    }
                }
            }
            throw error
        }
        return batch.count
    }
}
