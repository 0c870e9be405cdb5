import Audit
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Keys
import Logging
import NIOCore
import Storage
import Tenants
import Vault

/// The data plane: one code path for every vendor and route (DESIGN §7), in its order:
///
/// authenticate → route (vendor, credentials, normalized path, credential endpoints, allowlist, accounts) → rate limit →
/// body, read as the vendor reads it → price from the parameters → claim (idempotency key and duplicate fingerprint: may replay, may wait; a request whose
/// amount is known reserves in the same statement) → price by lookup → reserve → forward → settle + audit.
///
/// Each phase lives in its own file of this folder; the request's money state is one `MoneyState` value
/// (MoneyState.swift holds its transition table). Any phase may throw a `Denial`: `deny` audits it and answers in
/// the vendor's envelope, whatever state the request's money was in.
public struct ProxyPipeline: Sendable {
    let config: ProxyConfiguration
    let authenticator: VaultKeyAuthenticator
    let credentials: CredentialStore
    let ledger: SpendLedger
    let idempotency: IdempotencyStore
    let forwarder: Forwarder
    let rateLimiter = KeyRateLimiter()
    let clock: any KeybrakeCore.Clock
    let adapters: VendorAdapters
    let tenants: (any TenantRepository)?
    let begins: ClaimReserveBatcher
    /// Tenant plan, a couple of seconds at most: only used to skip the quota round trip for pro tenants.
    let plans = ExpiringCache<String, Plan>(ttl: .seconds(2))
    let drain: Drain?
    /// Whose `X-Forwarded-For` names the client that failed-attempt limits count.
    let trustedProxies: TrustedProxies
    /// Where attempts with a key's id but an unproven token are summed up (DESIGN §4); nil: not recorded.
    let unverifiedAttempts: UnverifiedAttempts?
    /// Fair admission per tenant (DESIGN §16); nil: every request admitted at once.
    let gate: TenantGate?
    /// Tenants whose free-plan quota this month is known to be used up (UTC month, used, quota), for about two
    /// seconds: their refusals are decided here instead of by a reserve statement each (DESIGN §16).
    let quotaSpent = ExpiringCache<String, QuotaSpent>(ttl: .seconds(2))

    public init(config: ProxyConfiguration, authenticator: VaultKeyAuthenticator, credentials: CredentialStore,
                ledger: SpendLedger, idempotency: IdempotencyStore, forwarder: Forwarder, clock: any KeybrakeCore.Clock,
                tenants: (any TenantRepository)? = nil, drain: Drain? = nil, trustedProxies: TrustedProxies = .none,
                unverifiedAttempts: UnverifiedAttempts? = nil, gate: TenantGate? = nil) {
        self.gate = gate
        self.trustedProxies = trustedProxies
        self.unverifiedAttempts = unverifiedAttempts
        self.tenants = tenants
        self.drain = drain
        self.config = config
        self.authenticator = authenticator
        self.credentials = credentials
        self.ledger = ledger
        self.begins = ClaimReserveBatcher(ledger: ledger)
        self.idempotency = idempotency
        self.forwarder = forwarder
        self.clock = clock
        self.adapters = VendorAdapters(config: config)
    }

    /// A request stopped before (or instead of) going upstream.
    struct Denial: Error {
        var error: KeybrakeError
    }

    /// Per-request working state.
    struct Flight {
        let vendor: Vendor
        let method: String
        let started: ContinuousClock.Instant
        let logger: Logger
        var key: VaultKey
        var audit: AuditEvent
        /// The request's money: see MoneyState's transition table.
        var money: MoneyState = .open
        /// The records this request claims (Idempotency-Key, duplicate fingerprint), and those it holds.
        var claims: [IdempotencyStore.Claim] = []
        var owned: [String] = []
        var amount: MicroUSD = .zero
        /// The Idempotency-Key sent upstream (the agent's, the automatic one, or one made for an unknown outcome's retry).
        var upstreamKey: String?
        var autoKey = false
        var endpoint: RegisteredEndpoint?
        /// A PaymentIntent or charge whose counted amount this request adds to, once it settles.
        var countedObject: CountedObject?
        var countUsageMonth: String?
        /// Holds one of its tenant's admission seats (`TenantGate`), given back before it goes upstream.
        var holdsSeat = false
    }

    struct QuotaSpent: Sendable {
        var month: String
        var used: Int64
        var quota: Int64
    }

    enum CountedObject: Sendable, Equatable {
        case existing(String)
        /// The object this request creates: its id comes with the answer.
        case createdByThisRequest
    }

    // MARK: - The spine

    /// Handles one proxied request. `path` is the vendor path (prefix already removed), raw, with no query.
    /// The one switch on the vendor: everything after it runs over that vendor's adapter.
    public func handle(vendor: Vendor, path rawPath: String, request: Request, context: KeybrakeRequestContext) async -> Response {
        switch vendor {
        case .stripe: await handle(adapters.stripe, path: rawPath, request: request, context: context)
        case .twilio: await handle(adapters.twilio, path: rawPath, request: request, context: context)
        case .resend: await handle(adapters.resend, path: rawPath, request: request, context: context)
        }
    }

    func handle<A: VendorAdapter>(_ a: A, path rawPath: String, request: Request, context: KeybrakeRequestContext) async -> Response {
        if let refusal = drain?.refusal {
            // Draining (`shutting_down`) or not yet started (`unavailable`): nothing claimed, reserved or sent; the
            // agent (or its load balancer) retries, on another replica or once this one is ready.
            return a.errorResponse(refusal)
        }
        let started = ContinuousClock.now
        var flight: Flight
        let client = RequestClient(request, context, proxies: trustedProxies)
        switch await authenticate(a, rawPath: rawPath, request: request, client: client, logger: context.logger, started: started) {
        case .answered(let response): return response
        case .denied(let error, var f):
            // A refused key's row is database work too: admitted like any request of its tenant.
            guard await admit(&f) else { return await deny(a, tenantBusy, &f) }
            let response = await deny(a, error, &f)
            releaseSeat(&f)
            return response
        case .authenticated(let f): flight = f
        }
        let response: Response
        do {
            response = try await run(a, &flight, rawPath: rawPath, request: request)
        } catch let denial as Denial {
            response = await deny(a, denial.error, &flight)
        } catch {
            response = await deny(a, DatabaseErrors.map(error, logger: flight.logger), &flight)
        }
        releaseSeat(&flight)
        return response
    }

    /// Admission (DESIGN §16): a seat of the request's tenant, at once when its share has one free (one lock, no
    /// suspension), else after a bounded fair wait. False: refused (`tenant_busy`). A seat covers database work
    /// only — pricing, claim, reserve, a refusal's row —, never a client's upload or a vendor's answer: it is taken
    /// once the body is in and given back around a price lookup, an identical request's wait and the forward.
    @inline(__always)
    func admit(_ f: inout Flight) async -> Bool {
        guard let gate else { return true }
        let tenant = f.key.tenantId
        if gate.tryAdmit(tenant) {
            f.holdsSeat = true
            return true
        }
        f.holdsSeat = await gate.wait(tenant)
        return f.holdsSeat
    }

    var tenantBusy: KeybrakeError { TenantGate.busy(gate?.settings ?? TenantGate.Settings()) }

    @inline(__always)
    func releaseSeat(_ f: inout Flight) {
        guard f.holdsSeat else { return }
        f.holdsSeat = false
        gate?.release(f.key.tenantId)
    }

    func run<A: VendorAdapter>(_ a: A, _ f: inout Flight, rawPath: String, request: Request) async throws -> Response {
        let (path, creds) = try await route(a, &f, rawPath: rawPath, request: request)
        try rateLimit(f)
        let body = try await collectBody(request)
        // Admission (DESIGN §16) once the client has sent its body: a seat never waits on a client's upload.
        guard await admit(&f) else { throw Denial(error: tenantBusy) }
        let read = try readRequest(a, f, path: path, request: request, body: body.data)
        var decision = try priceFromBody(a, &f, path: path, read: read)
        let periods = KeyCalendar.periods(now: clock.now(), timezone: f.key.policy.timezone)
        if f.method == "POST", let replay = try await claim(a, &f, path: path, request: request, body: body.data, decision: decision, periods: periods) {
            return replay
        }
        if case .lookup(let lookup) = decision, case .open = f.money {
            // The lookup waits on the vendor, not the database: no seat meanwhile.
            releaseSeat(&f)
            decision = try await priceByLookup(a, lookup, &f, creds: creds)
            guard await admit(&f) else { throw Denial(error: tenantBusy) }
        }
        try await reserve(&f, periods: periods)
        // Upstream time is not the database's: the seat goes to the next request now.
        releaseSeat(&f)
        return await forwardAndSettle(a, &f, path: path, query: read.upstreamQuery, request: request, body: body.buffer, creds: creds)
    }
}
