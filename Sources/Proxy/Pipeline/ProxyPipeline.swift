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
    let begins: BeginBatcher
    /// Tenant plan, a couple of seconds at most: only used to skip the quota round trip for pro tenants.
    let plans = ExpiringCache<String, Plan>(ttl: .seconds(2))
    let drain: Drain?
    /// Whose `X-Forwarded-For` names the client that failed-attempt limits count.
    let trustedProxies: TrustedProxies
    /// Where attempts with a key's id but an unproven token are summed up (DESIGN §4); nil: not recorded.
    let unverifiedAttempts: UnverifiedAttempts?

    public init(config: ProxyConfiguration, authenticator: VaultKeyAuthenticator, credentials: CredentialStore,
                ledger: SpendLedger, idempotency: IdempotencyStore, forwarder: Forwarder, clock: any KeybrakeCore.Clock,
                tenants: (any TenantRepository)? = nil, drain: Drain? = nil, trustedProxies: TrustedProxies = .none,
                unverifiedAttempts: UnverifiedAttempts? = nil) {
        self.trustedProxies = trustedProxies
        self.unverifiedAttempts = unverifiedAttempts
        self.tenants = tenants
        self.drain = drain
        self.config = config
        self.authenticator = authenticator
        self.credentials = credentials
        self.ledger = ledger
        self.begins = BeginBatcher(ledger: ledger)
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
        case .denied(let error, var f): return await deny(a, error, &f)
        case .authenticated(let f): flight = f
        }
        do {
            return try await run(a, &flight, rawPath: rawPath, request: request)
        } catch let denial as Denial {
            return await deny(a, denial.error, &flight)
        } catch {
            return await deny(a, DatabaseErrors.map(error, logger: flight.logger), &flight)
        }
    }

    func run<A: VendorAdapter>(_ a: A, _ f: inout Flight, rawPath: String, request: Request) async throws -> Response {
        let (path, creds) = try await route(a, &f, rawPath: rawPath, request: request)
        try rateLimit(f)
        let body = try await collectBody(request)
        let read = try readRequest(a, f, path: path, request: request, body: body.data)
        var decision = try priceFromBody(a, &f, path: path, read: read)
        let periods = KeyCalendar.periods(now: clock.now(), timezone: f.key.policy.timezone)
        if f.method == "POST", let replay = try await claim(a, &f, path: path, request: request, body: body.data, decision: decision, periods: periods) {
            return replay
        }
        if case .lookup(let lookup) = decision, case .open = f.money {
            decision = try await priceByLookup(a, lookup, &f, creds: creds)
        }
        try await reserve(&f, periods: periods)
        return await forwardAndSettle(a, &f, path: path, query: read.upstreamQuery, request: request, body: body.buffer, creds: creds)
    }
}
