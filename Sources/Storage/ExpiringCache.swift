import Foundation
import NIOConcurrencyHelpers

/// A small in-process cache whose entries expire after `ttl`. For data that changes rarely and where a
/// few seconds of staleness on *other* replicas is acceptable (vendor credentials, a tenant's plan);
/// never for anything that must take effect on the next request (key status and policy are always read fresh).
public final class ExpiringCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    struct Entry { var value: Value; var expires: ContinuousClock.Instant }
    let ttl: Duration
    let capacity: Int
    let entries = NIOLockedValueBox([Key: Entry]())

    public init(ttl: Duration, capacity: Int = 10_000) {
        self.ttl = ttl
        self.capacity = capacity
    }

    public func get(_ key: Key) -> Value? {
        let now = ContinuousClock.now
        return entries.withLockedValue { e in
            guard let entry = e[key], entry.expires > now else { return nil }
            return entry.value
        }
    }

    public func set(_ key: Key, _ value: Value) {
        let now = ContinuousClock.now
        entries.withLockedValue { e in
            if e.count >= capacity { e = e.filter { $0.value.expires > now } }
            if e.count >= capacity { e.removeAll(keepingCapacity: true) }
            e[key] = Entry(value: value, expires: now + ttl)
        }
    }

    public func remove(_ key: Key) { _ = entries.withLockedValue { $0.removeValue(forKey: key) } }
}
