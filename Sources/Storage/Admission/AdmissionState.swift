/// The bookkeeping of fair admission (DESIGN §16), without locks or continuations so its choices can be tested
/// one by one (`TenantGate` runs it under one lock).
///
/// A replica has `seats`; a tenant holds at most `seatsPerTenant` of them. A request that finds a free seat within
/// its tenant's share takes it at once. Otherwise it waits in its tenant's queue (FIFO, at most `queuePerTenant`).
/// When a seat comes free it goes to the waiting tenant that holds the **fewest seats** (among those under their
/// share), ties broken by the **longest-waiting** head of queue: a tenant flooding with 128 connections holds its
/// share and queues the rest, while a tenant with one request waiting is served at the next free seat.
struct AdmissionState<Waiter> {
    struct Settings: Sendable, Equatable {
        var seats: Int
        var seatsPerTenant: Int
        var queuePerTenant: Int
    }

    struct Queued {
        var id: UInt64
        var waiter: Waiter
    }

    struct Tenant {
        var held = 0
        /// An array: empty, it allocates nothing (the fast path makes and drops this entry per request).
        var queue: [Queued] = []
    }

    enum Enqueued {
        /// A seat was free after all: taken.
        case admitted
        case queued
        /// The tenant's queue is full.
        case full
    }

    let settings: Settings
    private(set) var free: Int
    private(set) var tenants: [String: Tenant] = [:]
    /// Tenants with someone queued (few: a tenant is here only while it is over its share or the replica is full).
    private(set) var waiting: Set<String> = []

    init(_ settings: Settings) {
        self.settings = settings
        self.free = settings.seats
    }

    /// The fast path: a free seat within the tenant's share, and nobody of the tenant queued ahead.
    mutating func tryAdmit(_ tenant: String) -> Bool {
        guard free > 0 else { return false }
        if let t = tenants[tenant], t.held >= settings.seatsPerTenant || !t.queue.isEmpty { return false }
        tenants[tenant, default: Tenant()].held += 1
        free -= 1
        return true
    }

    /// Queues `waiter` unless a seat is free for it now or its tenant's queue is full. `id` names it for `remove`
    /// and orders the longest-waiting first: it must grow with time (the caller's counter).
    mutating func enqueue(_ tenant: String, id: UInt64, _ waiter: Waiter) -> Enqueued {
        if tryAdmit(tenant) { return .admitted }
        guard (tenants[tenant]?.queue.count ?? 0) < settings.queuePerTenant else { return .full }
        tenants[tenant, default: Tenant()].queue.append(Queued(id: id, waiter: waiter))
        waiting.insert(tenant)
        return .queued
    }

    /// Gives back one of `tenant`'s seats; returns the waiters now admitted (each already holds its seat).
    mutating func release(_ tenant: String) -> [Waiter] {
        guard let held = tenants[tenant]?.held, held > 0 else {
            assertionFailure("released a seat \(tenant) does not hold")
            return []
        }
        free += 1
        if held == 1 && tenants[tenant]!.queue.isEmpty { tenants[tenant] = nil } else { tenants[tenant]!.held -= 1 }
        var admitted: [Waiter] = []
        while free > 0, let next = nextTenant() {
            admitted.append(admitHead(of: next))
        }
        return admitted
    }

    /// Takes a waiter out of its queue (its wait ran out, or its request was cancelled); nil if it was admitted
    /// meanwhile (or is gone).
    mutating func remove(_ tenant: String, id: UInt64) -> Waiter? {
        guard let index = tenants[tenant]?.queue.firstIndex(where: { $0.id == id }) else { return nil }
        // In place (through the dictionary's storage): a copy of the tenant would copy its whole queue.
        let removed = tenants[tenant]!.queue.remove(at: index)
        let t = tenants[tenant]!
        if t.queue.isEmpty { waiting.remove(tenant) }
        if t.held == 0 && t.queue.isEmpty { tenants[tenant] = nil }
        return removed.waiter
    }

    /// Changes a queued waiter in place (its deadline ticket); false if it is no longer queued.
    mutating func updateQueued(_ tenant: String, id: UInt64, _ change: (inout Waiter) -> Void) -> Bool {
        guard let index = tenants[tenant]?.queue.firstIndex(where: { $0.id == id }) else { return false }
        change(&tenants[tenant]!.queue[index].waiter)
        return true
    }

    /// Fewest seats held first, then the longest-waiting head of queue (ids grow with time).
    func nextTenant() -> String? {
        var best: (name: String, held: Int, head: UInt64)?
        for name in waiting {
            guard let t = tenants[name], t.held < settings.seatsPerTenant, let head = t.queue.first else { continue }
            if let b = best, (b.held, b.head) <= (t.held, head.id) { continue }
            best = (name, t.held, head.id)
        }
        return best?.name
    }

    private mutating func admitHead(of tenant: String) -> Waiter {
        let head = tenants[tenant]!.queue.removeFirst()
        tenants[tenant]!.held += 1
        free -= 1
        if tenants[tenant]!.queue.isEmpty { waiting.remove(tenant) }
        return head.waiter
    }

    func held(by tenant: String) -> Int { tenants[tenant]?.held ?? 0 }
    func queued(for tenant: String) -> Int { tenants[tenant]?.queue.count ?? 0 }
}
