import KeybrakeCore
import Synchronization

/// Fair admission per tenant (DESIGN §16; the model is Kubernetes API Priority and Fairness with one priority level
/// and a tenant as a flow): `seats` in all, at most `seatsPerTenant` per tenant, the excess waiting in a bounded queue
/// per tenant. See `AdmissionState` for how a free seat is chosen. Two gates use it: the data plane's, before any
/// database work of a proxied request (`ProxyPipeline.admit`), and the admin reads' (`AdminReads`).
///
/// Cost when nothing contends: `tryAdmit` is one lock acquire (no task, no suspension), `release` one more. Only a
/// request that must wait suspends; its wait is bounded by the shared `DeadlineWatchdog` (no timer or task of its
/// own). A waiting request costs the server nothing while it waits, and a client that loops on its connections is
/// slowed to the rate its share is served at, instead of being refused as fast as it can ask.
public final class TenantGate: Sendable {
    /// The defaults are the data plane's: the proxy's work before the vendor (route, pricing, claim, reserve,
    /// refusal rows) holds a seat; the request gives it back before it goes upstream.
    public struct Settings: Sendable, Equatable {
        /// Seats per replica (`KEYBRAKE_ADMISSION_SEATS`).
        public var seats = 16
        /// Most seats one tenant holds at once (`KEYBRAKE_ADMISSION_SEATS_PER_TENANT`; by default three quarters of
        /// the seats). Measured on a release build (README "Fair shares"): a share of 8 of 16 leaves a flooded-beside
        /// tenant 0.65× of what it is served alone but costs a lone tenant saturating one hot key ~20 % of its
        /// throughput (it waits for its own seats); all 16 give that back and leave the other tenant 0.43–0.46×,
        /// next to the 0.4× bound; 12 gives 0.58× and most of the throughput.
        public var seatsPerTenant = 12
        /// Requests of one tenant that may wait for a seat (`KEYBRAKE_ADMISSION_QUEUE_PER_TENANT`); 0: none wait.
        public var queuePerTenant = 512
        /// Longest wait for a seat (`KEYBRAKE_ADMISSION_WAIT_MS`).
        public var maxWait: Duration = .seconds(2)
        public init() {}
        public init(seats: Int, seatsPerTenant: Int, queuePerTenant: Int, maxWait: Duration) {
            self.seats = seats
            self.seatsPerTenant = seatsPerTenant
            self.queuePerTenant = queuePerTenant
            self.maxWait = maxWait
        }
    }

    struct Waiter {
        var continuation: CheckedContinuation<Bool, Never>
        /// Its wait's deadline at the watchdog, cancelled once admitted.
        var ticket: UInt64
    }

    public let settings: Settings
    let state: Mutex<AdmissionState<Waiter>>
    let ids = Atomic<UInt64>(0)

    public init(settings: Settings = Settings()) {
        self.settings = settings
        state = Mutex(AdmissionState(.init(seats: settings.seats, seatsPerTenant: settings.seatsPerTenant,
                                           queuePerTenant: settings.queuePerTenant)))
    }

    /// A seat for `tenant` now, if its share has one free: the whole cost of admission when nothing contends.
    @inline(__always)
    public func tryAdmit(_ tenant: String) -> Bool {
        state.withLock { $0.tryAdmit(tenant) }
    }

    /// Waits for a seat (after `tryAdmit` said no): true once admitted, false when refused (queue full, waited
    /// `maxWait`, or the request was cancelled). An admitted caller must `release`.
    public func wait(_ tenant: String) async -> Bool {
        let id = ids.wrappingAdd(1, ordering: .relaxed).newValue
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let enqueued = state.withLock { $0.enqueue(tenant, id: id, Waiter(continuation: continuation, ticket: 0)) }
                guard enqueued == .queued else { return continuation.resume(returning: enqueued == .admitted) }
                // Registered once queued, so the deadline cannot fire before there is anything to refuse.
                let ticket = DeadlineWatchdog.shared.register(after: settings.maxWait) { [self] in giveUp(tenant, id: id) }
                let stillQueued = state.withLock { $0.updateQueued(tenant, id: id) { $0.ticket = ticket } }
                if !stillQueued { DeadlineWatchdog.shared.cancel(ticket) }
            }
        } onCancel: {
            giveUp(tenant, id: id)
        }
    }

    /// Gives a seat back; the waiters it admits are resumed outside the lock.
    public func release(_ tenant: String) {
        let admitted = state.withLock { $0.release(tenant) }
        for waiter in admitted {
            DeadlineWatchdog.shared.cancel(waiter.ticket)
            waiter.continuation.resume(returning: true)
        }
    }

    /// A waiter's time is up (or its request is gone): refused, unless it was admitted meanwhile.
    func giveUp(_ tenant: String, id: UInt64) {
        guard let waiter = state.withLock({ $0.remove(tenant, id: id) }) else { return }
        DeadlineWatchdog.shared.cancel(waiter.ticket)
        waiter.continuation.resume(returning: false)
    }

    /// Seats held and requests queued by `tenant` (tests, metrics).
    public func load(_ tenant: String) -> (held: Int, queued: Int) {
        state.withLock { ($0.held(by: tenant), $0.queued(for: tenant)) }
    }

    public static func busy(_ settings: Settings) -> KeybrakeError {
        KeybrakeError(status: 429, code: .tenantBusy,
                      message: "Too many requests of this tenant at once on this replica: it holds its share of \(settings.seatsPerTenant) and its requests waited \(settings.maxWait.milliseconds) ms (or \(settings.queuePerTenant) were already waiting). Send fewer requests in parallel, or retry after the Retry-After seconds. Other tenants are served their own share.",
                      retryAfterSeconds: 1)
    }
}
