import Foundation
import NIOConcurrencyHelpers

/// Key rows in memory, served only while this replica holds its lease and listens for key changes (DESIGN §4 "Key
/// status is never stale"). `KeyChangeFeed` keeps it: it invalidates the keys a change names (and their
/// descendants, whose rows carry their ancestors) before it acknowledges the change, and it stops serving from memory
/// the moment its connection fails or its lease would run out — then every read goes to Postgres until it has
/// re-synchronised. Money-moving statements re-check the key in Postgres anyway (kb_reserve).
public final class KeyDirectory: Sendable {
    typealias Row = (VaultKey, String)

    struct State {
        var entries: [String: Row] = [:]
        /// Bumped by every invalidation: a read that started before one must not store what it read.
        var epoch: UInt64 = 0
        var listening = false
        var leaseUntil: ContinuousClock.Instant?
    }

    let state = NIOLockedValueBox(State())
    /// Bound on rows kept; past it the memory starts again (rows are re-read on demand).
    let maxEntries: Int

    public init(maxEntries: Int = 100_000) {
        self.maxEntries = maxEntries
    }

    /// Whether rows are served from memory right now.
    public var isServing: Bool { state.withLockedValue { Self.serving($0) } }

    static func serving(_ s: State) -> Bool {
        guard s.listening, let until = s.leaseUntil else { return false }
        return ContinuousClock.now < until
    }

    /// The key's row if it is in memory and memory may be served; otherwise nil and the epoch to store a read under.
    func lookup(_ id: String) -> (row: Row?, epoch: UInt64?) {
        state.withLockedValue { s in
            guard Self.serving(s) else { return (nil, nil) }
            return (s.entries[id], s.epoch)
        }
    }

    /// Keeps a row read from Postgres, unless an invalidation happened since the read started.
    func store(_ row: Row, epoch: UInt64) {
        state.withLockedValue { s in
            guard Self.serving(s), s.epoch == epoch else { return }
            if s.entries.count >= maxEntries { s.entries.removeAll(keepingCapacity: true) }
            s.entries[row.0.id] = row
        }
    }

    /// Forgets the keys and every key below them.
    public func invalidate(_ ids: [String]) {
        let changed = Set(ids)
        state.withLockedValue { s in
            s.epoch &+= 1
            for id in ids { s.entries[id] = nil }
            let below = s.entries.values.filter { !changed.isDisjoint(with: $0.0.ancestorIds) }.map(\.0.id)
            for id in below { s.entries[id] = nil }
        }
    }

    /// Listening again after a (re)connection: start from nothing, since changes may have been missed.
    public func resynchronised(leaseUntil: ContinuousClock.Instant) {
        state.withLockedValue { s in
            s.entries.removeAll()
            s.epoch &+= 1
            s.listening = true
            s.leaseUntil = leaseUntil
        }
    }

    public func renewed(leaseUntil: ContinuousClock.Instant) {
        state.withLockedValue { $0.leaseUntil = leaseUntil }
    }

    /// The listener is gone (connection lost, shutdown): every read goes to Postgres from now on.
    public func stopServing() {
        state.withLockedValue { s in
            s.listening = false
            s.leaseUntil = nil
            s.entries.removeAll()
            s.epoch &+= 1
        }
    }
}
