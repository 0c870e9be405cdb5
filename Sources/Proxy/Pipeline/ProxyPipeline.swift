import Audit
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
/// body, read as the vendor reads it → price from the parameters → claim (idempotency key and duplicate fingerprint:
/// may replay, may wait) → price by lookup → reserve → forward → settle + audit.
///
/// Each phase lives in its own file of this folder (Authenticate, Route, RateLimit, Price, Claim, Replay, Reserve,
/// Forward, Settle, Deny; Admission gives and takes the tenant's seats). One `ProxiedRequest` value goes through
/// them all; its money state is one `MoneyState` (MoneyState.swift holds the transition table). Reserve.swift owns
/// every reservation, including the one a claim makes in the same statement. Everything vendor-specific is the
/// adapter's (Vendors/). Any phase may throw a `Denial`: `deny` audits it and answers in the vendor's envelope,
/// whatever state the request's money was in.
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
    let claimsAndReserves: ClaimReserveBatcher
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
        self.claimsAndReserves = ClaimReserveBatcher(ledger: ledger)
        self.idempotency = idempotency
        self.forwarder = forwarder
        self.clock = clock
        self.adapters = VendorAdapters(config: config)
    }

    /// A request stopped before (or instead of) going upstream.
    struct Denial: Error {
        var error: KeybrakeError
    }

    struct QuotaSpent: Sendable {
        var month: String
        var used: Int64
        var quota: Int64
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
        var proxied: ProxiedRequest
        let client = RequestClient(request, context, proxies: trustedProxies)
        switch await authenticate(a, rawPath: rawPath, request: request, client: client, logger: context.logger, started: started) {
        case .answered(let response): return response
        case .denied(let error, var refused):
            // A refused key's row is database work too: admitted like any request of its tenant.
            guard await admit(&refused) else { return await deny(a, tenantBusy, &refused) }
            let response = await deny(a, error, &refused)
            releaseSeat(&refused)
            return response
        case .authenticated(let r): proxied = r
        }
        let response: Response
        do {
            response = try await run(a, &proxied, rawPath: rawPath, request: request)
        } catch let denial as Denial {
            response = await deny(a, denial.error, &proxied)
        } catch {
            response = await deny(a, DatabaseErrors.map(error, logger: proxied.logger), &proxied)
        }
        releaseSeat(&proxied)
        return response
    }

    /// The phases in order; each is a function of its own file in this folder.
    func run<A: VendorAdapter>(_ a: A, _ r: inout ProxiedRequest, rawPath: String, request: Request) async throws -> Response {
        let (path, creds) = try await route(a, &r, rawPath: rawPath, request: request)
        try rateLimit(r)
        let body = try await collectBody(request)
        // Admission (DESIGN §16) once the client has sent its body: a seat never waits on a client's upload.
        guard await admit(&r) else { throw Denial(error: tenantBusy) }
        let read = try readRequest(a, r, path: path, request: request, body: body.data)
        let decision = try priceFromBody(a, &r, path: path, read: read)
        let periods = KeyCalendar.periods(now: clock.now(), timezone: r.key.policy.timezone)
        if r.method == "POST",
           let replay = try await claim(a, &r, path: path, request: request, body: body.data, decision: decision, periods: periods) {
            return replay
        }
        if case .lookup(let lookup) = decision, case .open = r.money {
            // The lookup waits on the vendor, not the database: no seat meanwhile.
            releaseSeat(&r)
            try await priceByLookup(a, lookup, &r, creds: creds)
            guard await admit(&r) else { throw Denial(error: tenantBusy) }
        }
        try await reserve(&r, periods: periods)
        // Upstream time is not the database's: the seat goes to the next request now.
        releaseSeat(&r)
        let answer = await forward(a, &r, path: path, query: read.upstreamQuery, request: request, body: body.buffer, creds: creds)
        return await settle(a, &r, answer)
    }

    /// A database call before the request goes upstream, under the database deadline (fail closed: 503 and nothing
    /// forwarded). A query sent on a connection Postgres has just closed can be stranded in PostgresNIO and never
    /// answer (postgres-nio #487, reverted by #501), so no call of a request may wait unbounded: the settle after it
    /// has its own deadline, which leaves the attempts running (`recordSettlement`).
    /// `Deadline.run` costs a task per call; only the calls a request needs go through here.
    ///
    /// Deaf to cancellation (`hearsCancellation: false`), as before Deadline heard it. A proxied request is cancelled
    /// only when the whole group is (a second signal, or past the drain's bound); the pool then closes, which fails
    /// the work this call waits for, so it ends anyway (what had to hear cancellation was the pool's own probe, which
    /// the pool's closing waits for). And the cancellation handler was the one new cost on the GET path, where A/B
    /// runs at saturation were too noisy to clear it (docs/benchmarks.md).
    @discardableResult
    func bounded<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T,
                              onLateSuccess: @escaping @Sendable (T) async -> Void = { _ in }) async throws -> T {
        try await Deadline.run(config.databaseDeadline, hearsCancellation: false, operation, onLateSuccess: onLateSuccess)
    }
}
