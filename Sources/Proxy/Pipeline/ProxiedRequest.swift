import Audit
import KeybrakeCore
import Keys
import Logging

/// The one value a proxied request carries through every phase (Pingora's per-request context): who asks, what it
/// costs, what it holds. Each property says which phase sets it; later phases read it by name.
struct ProxiedRequest {
    let vendor: Vendor
    let method: String
    let started: ContinuousClock.Instant
    let logger: Logger
    var key: VaultKey
    var audit: AuditEvent
    /// The request's money: see MoneyState's transition table.
    var money: MoneyState = .open
    /// Route: the registry's entry for the path (nil: the registry does not know it).
    var endpoint: RegisteredEndpoint?
    /// Price (and price by lookup): what the request will move.
    var price = Price()
    /// Claim: the idempotency records this request claims, and those it holds.
    var records = Records()
    /// Claim: the Idempotency-Key sent upstream (the agent's, the automatic one, one made for an unknown outcome's
    /// retry, or the earlier request's when this one resumes it).
    var upstreamKey: String?
    /// Claim: Keybrake made `upstreamKey` from the request (the agent sent none); the answer names it.
    var upstreamKeyIsAutomatic = false
    /// Reserve: when the request is counted against its tenant's monthly quota.
    var quota: QuotaCount = .byReserve
    /// Admission: holds one of its tenant's seats (`TenantGate`), given back before it goes upstream.
    var holdsSeat = false

    struct Price {
        var amount: MicroUSD = .zero
        /// A PaymentIntent or charge whose counted amount this request adds to, once it settles.
        var countedObject: CountedObject?
    }

    enum CountedObject: Sendable, Equatable {
        case existing(String)
        /// The object this request creates: its id comes with the answer.
        case createdByThisRequest
    }

    struct Records {
        /// Every record the request claims (Idempotency-Key, duplicate fingerprint, lease), with its window.
        var claims: [IdempotencyStore.Claim] = []
        /// The scopes it holds now (claimed, or taken over from an earlier unknown outcome).
        var held: [String] = []

        /// Seconds a completed record is kept: its claim's window.
        func windowSeconds(of scope: String) -> Int32 {
            Int32(clamping: claims.first { $0.scope == scope }?.window.components.seconds ?? 0)
        }
    }

    enum QuotaCount: Equatable {
        /// The reserve statement counts it (and refuses it past the free quota).
        case byReserve
        /// Nothing to reserve and no quota to enforce (pro plan): counted in this UTC month when the request finishes.
        case whenFinished(utcMonth: String)

        var monthCountedWhenFinished: String? {
            if case .whenFinished(let month) = self { return month }
            return nil
        }
    }

    /// Moves no money and holds no record: nothing about it needs the answer before its audit row exists, so the row is
    /// written while the request is upstream.
    var isAuditOnly: Bool { money == .open && records.held.isEmpty }

    /// An audit-only request that counts no object streams the vendor's answer to the agent; the others read it
    /// whole (settlement reads the body, records keep it for replay).
    var streamsAnswer: Bool { isAuditOnly && price.countedObject == nil }
}
