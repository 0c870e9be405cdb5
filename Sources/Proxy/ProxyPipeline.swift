import Audit
import Crypto
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

/// The data plane: one code path for every vendor and route (DESIGN §7).
///
/// authenticate → vendor → credentials → allowlist → rate limit → body → price → idempotency / duplicate guard
/// → reserve (quota + caps, one statement) → forward → settle + audit (one statement). The audit step runs for
/// every request that can be attributed to a key, denials included.
public struct ProxyPipeline: Sendable {
    let config: ProxyConfiguration
    let authenticator: VaultKeyAuthenticator
    let credentials: CredentialStore
    let ledger: SpendLedger
    let idempotency: IdempotencyStore
    let forwarder: Forwarder
    let rateLimiter = KeyRateLimiter()
    let clock: any KeybrakeCore.Clock
    let stripePricer: StripePricer
    let tenants: (any TenantRepository)?
    let begins: BeginBatcher
    /// Tenant plan, a couple of seconds at most: only used to skip the quota round trip for pro tenants.
    let plans = ExpiringCache<String, Plan>(ttl: .seconds(2))

    public init(config: ProxyConfiguration, authenticator: VaultKeyAuthenticator, credentials: CredentialStore,
                ledger: SpendLedger, idempotency: IdempotencyStore, forwarder: Forwarder, clock: any KeybrakeCore.Clock,
                tenants: (any TenantRepository)? = nil) {
        self.tenants = tenants
        self.config = config
        self.authenticator = authenticator
        self.credentials = credentials
        self.ledger = ledger
        self.begins = BeginBatcher(ledger: ledger)
        self.idempotency = idempotency
        self.forwarder = forwarder
        self.clock = clock
        self.stripePricer = StripePricer(fx: config.fx)
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
        var owned: [String] = []
        var reservationId: String?
        var amount: MicroUSD = .zero
        var upstreamKey: String?
        var autoKey = false
        var dupScope: String?
        var heldFromEarlier = false
        /// Claims and reservation were made together (kb_begin): the reserve step has nothing left to do.
        var reservedWithClaims = false
        var countUsageMonth: String?
    }

    // MARK: - Entry point

    /// Handles one proxied request. `path` is the vendor path (prefix already removed), raw, with no query.
    public func handle(vendor: Vendor, path rawPath: String, request: Request, context: KeybrakeRequestContext) async -> Response {
        let started = ContinuousClock.now
        let logger = context.logger
        let method = request.method.rawValue

        // 1. authenticate
        guard let token = Self.vaultToken(request.headers) else {
            ProxyMetrics.request(vendor: vendor.rawValue, decision: "denied", code: "vault_key_invalid")
            return VendorErrorRenderer.response(VaultKeyAuthenticator.invalidError, vendor: vendor)
        }
        let key: VaultKey
        do {
            let authenticator = self.authenticator, now = clock.now()
            switch try await Deadline.run(config.databaseDeadline, { try await authenticator.authenticate(token: token, now: now, logger: logger) }) {
            case .success(let k):
                key = k
            case .failure(.invalid):
                ProxyMetrics.request(vendor: vendor.rawValue, decision: "denied", code: "vault_key_invalid")
                logger.info("proxy request with an invalid vault key", metadata: ["vendor": "\(vendor.rawValue)"])
                return VendorErrorRenderer.response(VaultKeyAuthenticator.invalidError, vendor: vendor)
            case .failure(.denied(let k, let error)):
                var flight = Flight(vendor: vendor, method: method, started: started, logger: logger, key: k,
                                    audit: Self.audit(for: k, vendor: vendor, method: method, path: rawPath, request: request))
                return await deny(error, &flight)
            }
        } catch {
            return VendorErrorRenderer.response(DatabaseErrors.map(error, logger: logger), vendor: vendor)
        }

        var flight = Flight(vendor: vendor, method: method, started: started, logger: logger, key: key,
                            audit: Self.audit(for: key, vendor: vendor, method: method, path: rawPath, request: request))
        do {
            return try await run(&flight, rawPath: rawPath, request: request)
        } catch let denial as Denial {
            return await deny(denial.error, &flight)
        } catch {
            return await deny(DatabaseErrors.map(error, logger: logger), &flight)
        }
    }

    // MARK: - Phases

    func run(_ f: inout Flight, rawPath: String, request: Request) async throws -> Response {
        let policy = f.key.policy
        // 2. vendor
        guard policy.vendor == f.vendor else {
            throw Denial(error: KeybrakeError(status: 403, code: "vendor_not_allowed",
                message: "This vault key (\(f.key.id)) is for \(policy.vendor.rawValue); it cannot call \(f.vendor.rawValue)."))
        }
        // 3. credentials (needed to route Twilio paths, and to forward)
        let credentials = self.credentials, vendor = f.vendor, tenantId = f.key.tenantId, logger = f.logger
        // A cache hit costs no round trip, so it needs no deadline (and none of its timer and task hops).
        let found: VendorCredentials?
        if let cached = credentials.cachedOnly(vendor: vendor, tenantId: tenantId) {
            found = cached
        } else {
            found = try await Deadline.run(config.databaseDeadline, {
                try await credentials.cachedCredentials(vendor: vendor, tenantId: tenantId, logger: logger)
            })
        }
        guard let creds = found else {
            throw Denial(error: KeybrakeError(status: 403, code: "vendor_credentials_missing",
                message: "No \(f.vendor.rawValue) credentials are stored for this tenant. Store them with PUT /v1/vendors/\(f.vendor.rawValue)/credentials."))
        }
        // 4. allowlist on the normalized path
        let path: String
        switch PathNormalizer.normalize(rawPath) {
        case .success(let normalized): path = Self.substituteAccount(normalized, creds: creds)
        case .failure(let rejection):
            throw Denial(error: KeybrakeError(status: 403, code: "endpoint_not_allowed",
                message: "Request refused: \(rejection.reason). Send a plain path without encoded slashes or dot segments."))
        }
        f.audit.path = path
        f.audit.operation = f.vendor == .stripe ? StripeOperations.operationName(method: f.method, normalizedPath: path) : nil
        guard policy.endpointPatterns.allows(method: f.method, normalizedPath: path) else {
            let what = f.audit.operation.map { "\($0) (\(f.method) \(path))" } ?? "\(f.method) \(path)"
            throw Denial(error: KeybrakeError(status: 403, code: "endpoint_not_allowed",
                message: "\(what) is not allowed for key '\(policy.label)' (\(f.key.id)); it allows: \(policy.allowedEndpoints.joined(separator: ", "))."))
        }
        if f.vendor == .stripe, let account = request.headers[.stripeAccount], !policy.allowedStripeAccounts.contains(account) {
            throw Denial(error: KeybrakeError(status: 403, code: "stripe_account_not_allowed",
                message: "Stripe-Account \(account.prefix(64)) is not in this key's allowed_stripe_accounts."))
        }
        // 5. rate limit
        if let limit = policy.rateLimitPerMinute, let retry = rateLimiter.hit(f.key.id, limit: limit, now: clock.now()) {
            throw Denial(error: .rateLimited("Key '\(policy.label)' is limited to \(limit) requests a minute; retry in \(retry) s.", retryAfter: retry))
        }
        // 6. body
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: config.maxRequestBody)
        } catch {
            throw Denial(error: KeybrakeError(status: 413, code: "body_too_large", message: "Request bodies are limited to \(config.maxRequestBody / 1024) KiB."))
        }
        let bodyData = Data(body.readableBytesView)
        let contentType = request.headers[.contentType]

        // 7. price (without upstream lookups yet)
        var decision = try price(f.vendor, method: f.method, path: path, body: bodyData)
        if case .priced(let quote) = decision { note(quote, &f) }

        // 8. idempotency and duplicate guard (POST only); a request whose amount is already known reserves in the
        // same statement as its claims.
        let periods = Self.periods(now: clock.now(), timezone: policy.timezone)
        if f.method == "POST" {
            let reserveWithClaims = if case .priced = decision, f.amount > .zero { true } else { false }
            if let replay = try await claimIdempotency(&f, path: path, request: request, body: bodyData, contentType: contentType,
                                                       priced: decision != .free, reserveWith: reserveWithClaims ? periods : nil) {
                return replay
            }
        }

        // Lookups price requests whose body carries no amount; done after the claim so parallel duplicates don't repeat them.
        if case .lookup(let lookup) = decision, !f.heldFromEarlier {
            decision = try await resolveLookup(lookup, &f, creds: creds)
        }

        // 9. reserve: caps + quota, all or nothing (a retry of an unknown outcome reuses its reservation)
        if f.reservedWithClaims {
            return try await forward(&f, path: path, request: request, body: body, creds: creds)
        }
        let amount = f.heldFromEarlier ? MicroUSD.zero : f.amount
        if amount == .zero, try await plan(of: f) == .pro {
            // Nothing to reserve and no quota to enforce: count the request when it finishes instead.
            f.countUsageMonth = periods.utcMonth
            return try await forward(&f, path: path, request: request, body: body, creds: creds)
        }
        let reserveId = f.audit.id
        let ledger = self.ledger, keyId = f.key.id, freeQuota = config.freeMonthlyRequests
        let giveBack = LateUndo(f, ledger: ledger), owned = f.owned
        let result = try await Deadline.run(config.databaseDeadline, {
            try await ledger.reserve(
                keyId: keyId, tenantId: tenantId, amount: amount, day: periods.day, month: periods.month,
                usageMonth: periods.utcMonth, freeQuota: freeQuota, reservationId: reserveId, logger: logger
            )
        }, onLateSuccess: { result in
            guard result == .ok else { return }
            await giveBack(reservationId: amount > .zero ? reserveId : nil, scopes: owned)
        })
        if case .denied(let code, let used, let cap) = result {
            throw Denial(error: reserveDenial(code: code, used: used, cap: cap, f, periods: periods))
        }
        if !f.heldFromEarlier && amount > .zero {
            f.reservationId = reserveId
            ProxyMetrics.reservationsHeld(delta: 1)
        }

        // 10. forward
        return try await forward(&f, path: path, request: request, body: body, creds: creds)
    }

    // MARK: - Pricing

    func price(_ vendor: Vendor, method: String, path: String, body: Data) throws -> PricingDecision {
        do {
            switch vendor {
            case .stripe: return try stripePricer.price(method: method, normalizedPath: path, form: FormBody(parsing: body))
            case .twilio: return config.twilio.price(method: method, normalizedPath: path, form: FormBody(parsing: body))
            case .resend: return try config.resend.price(method: method, normalizedPath: path, jsonBody: body)
            }
        } catch {
            throw Denial(error: error)
        }
    }

    func note(_ quote: PriceQuote, _ f: inout Flight) {
        f.amount = quote.micros
        f.audit.amountMicros = quote.micros.micros
        f.audit.amountMinor = quote.amountMinor
        f.audit.currency = quote.currency
    }

    func resolveLookup(_ lookup: StripeLookup, _ f: inout Flight, creds: VendorCredentials) async throws -> PricingDecision {
        // A PaymentIntent created (and priced) through Keybrake is not counted again when confirmed.
        if lookup.kind == .paymentIntentAmount, let objectId = lookup.path.split(separator: "/").last,
           try await ledger.isPriced(tenantId: f.key.tenantId, vendor: f.vendor.rawValue, objectId: String(objectId), logger: f.logger) {
            return .free
        }
        let upstream: Forwarder.UpstreamResponse
        do {
            upstream = try await forwarder.send(method: "GET", url: baseURL(f.vendor) + lookup.path,
                                                headers: Self.credentialHeaders(creds), body: nil, logger: f.logger)
        } catch {
            throw Denial(error: KeybrakeError(status: 502, code: "upstream_error",
                message: "Could not look up \(lookup.path) at \(f.vendor.rawValue) to price this request; nothing was sent. Retry shortly."))
        }
        guard (200..<300).contains(upstream.status) else {
            throw Denial(error: KeybrakeError(status: upstream.status == 404 ? 404 : 400, code: "amount_required",
                message: "Could not price this request: looking up \(lookup.path) returned \(upstream.status). Nothing was sent."))
        }
        do {
            let quote = try stripePricer.priceLookup(lookup, objectJSON: Data(upstream.body.readableBytesView))
            note(quote, &f)
            return .priced(quote)
        } catch {
            throw Denial(error: error)
        }
    }

    // MARK: - Idempotency

    /// Claims the request's idempotency records. Returns a replay response when an identical request already
    /// succeeded (or finishes while we wait); throws a Denial for reuse, in-flight timeouts and unknown outcomes.
    func claimIdempotency(_ f: inout Flight, path: String, request: Request, body: Data, contentType: String?, priced: Bool,
                          reserveWith periods: Periods? = nil) async throws -> Response? {
        let canonical = CanonicalBody.canonical(contentType: contentType, body: body)
        let bodyHash = Self.sha256Hex(canonical)
        var claims: [IdempotencyStore.Claim] = []
        let agentKey = AuditEvent.sanitize(request.headers[.idempotencyKey])
        var idemKey = agentKey
        if idemKey == nil, f.key.policy.autoIdempotency {
            idemKey = "kb_\(f.key.id.dropFirst(4))_" + Self.sha256Hex(Data("\(f.method)\n\(path)\n".utf8) + canonical)
            f.autoKey = true
        }
        if let idemKey {
            f.upstreamKey = idemKey
            f.audit.idempotencyKey = idemKey
            f.audit.idempotencyAuto = f.autoKey
            claims.append(.init(scope: "idem:\(f.vendor.rawValue):\(f.method):\(path):\(idemKey)", requestHash: bodyHash,
                                ttl: config.idempotencyTTL, upstreamKey: idemKey))
        }
        if priced, f.key.policy.duplicateWindowSeconds > 0 {
            let fingerprint = Self.sha256Hex(CanonicalBody.fingerprintInput(
                parts: [f.key.tenantId, f.vendor.rawValue, f.method, path], canonicalBody: canonical))
            let scope = "dup:\(fingerprint)"
            f.dupScope = scope
            claims.append(.init(scope: scope, requestHash: fingerprint, ttl: .seconds(f.key.policy.duplicateWindowSeconds), upstreamKey: idemKey))
        }
        guard !claims.isEmpty else { return nil }

        let deadline = ContinuousClock.now + config.inFlightWait
        // Bounded by the deadline (in-flight waits) and by a generous attempt count (records vanishing under us).
        attempts: for attempt in 0..<2_000 {
            let idempotency = self.idempotency, tenantId = f.key.tenantId, ownerId = f.audit.id, logger = f.logger, toClaim = claims
            let claimed: Set<String>
            if attempt == 0, let periods {
                switch try await claimAndReserve(&f, claims: claims, periods: periods) {
                case .ok:
                    return nil
                case .claimsPartial(let got):
                    claimed = got
                case .denied(let code, let used, let cap):
                    throw Denial(error: reserveDenial(code: code, used: used, cap: cap, f, periods: periods))
                }
            } else {
                claimed = try await Deadline.run(config.databaseDeadline, {
                    try await idempotency.claim(toClaim, tenantId: tenantId, ownerId: ownerId, logger: logger)
                }, onLateSuccess: { late in
                    try? await idempotency.release(tenantId: tenantId, scopes: Array(late), ownerId: ownerId, logger: logger)
                })
            }
            f.owned = Array(claimed)
            for claim in claims where !claimed.contains(claim.scope) {
                guard let record = try await idempotency.record(tenantId: f.key.tenantId, scope: claim.scope, logger: f.logger) else {
                    try await idempotency.release(tenantId: f.key.tenantId, scopes: f.owned, ownerId: f.audit.id, logger: f.logger)
                    continue attempts  // expired or dropped meanwhile: claim again
                }
                let isDup = claim.scope.hasPrefix("dup:")
                if !isDup, record.requestHash != claim.requestHash {
                    throw Denial(error: KeybrakeError(status: 400, code: "idempotency_key_reused",
                        message: "Idempotency-Key \(idemKey ?? "") was already used with a different request body. Use a new key for a different request."))
                }
                switch record.state {
                case "completed":
                    guard let response = record.response else { continue attempts }
                    return try await replay(response, of: record.ownerId, isDuplicate: isDup, &f)
                case "unknown":
                    if f.vendor == .twilio {
                        throw Denial(error: KeybrakeError(status: 409, code: "outcome_unknown",
                            message: "An identical request (audit \(record.ownerId)) has an unknown outcome: Twilio may have sent it. Check Twilio, then resolve that audit row before retrying."))
                    }
                    // Stripe and Resend dedupe upstream: resend with the same Idempotency-Key and settle the held reservation.
                    if let taken = try await idempotency.takeOverUnknown(tenantId: f.key.tenantId, scope: claim.scope, newOwner: f.audit.id, logger: f.logger) {
                        f.owned.append(claim.scope)
                        f.heldFromEarlier = true
                        f.reservationId = taken.reservationId
                        if let key = taken.upstreamKey { f.upstreamKey = key; f.audit.idempotencyKey = key }
                        f.audit.resolves = record.ownerId
                        continue
                    }
                    continue attempts
                default:  // in_flight: wait for it, on whichever replica it runs
                    if ContinuousClock.now >= deadline {
                        throw Denial(error: KeybrakeError(status: 409, code: isDup ? "duplicate_in_flight" : "idempotency_key_in_use",
                            message: isDup
                                ? "An identical request (audit \(record.ownerId)) is still in flight; retry to receive its result."
                                : "A request with this Idempotency-Key (audit \(record.ownerId)) is still in flight; retry to receive its result."))
                    }
                    try await idempotency.release(tenantId: f.key.tenantId, scopes: f.owned, ownerId: f.audit.id, logger: f.logger)
                    f.owned = []
                    try await Task.sleep(for: .milliseconds(15))
                    continue attempts
                }
            }
            return nil
        }
        throw Denial(error: KeybrakeError(status: 409, code: "idempotency_key_in_use", message: "This request's idempotency record is contended; retry."))
    }

    /// First claim of a request whose amount is known: claims and reserve in one statement (kb_begin).
    func claimAndReserve(_ f: inout Flight, claims: [IdempotencyStore.Claim], periods: Periods) async throws -> SpendLedger.BeginResult {
        let begins = self.begins, idempotency = self.idempotency, logger = f.logger
        let tenantId = f.key.tenantId, ownerId = f.audit.id
        let item = BeginBatcher.Item(claims: claims, ownerId: ownerId, amount: f.amount, logger: logger)
        let key = BeginBatcher.Key(keyId: f.key.id, tenantId: tenantId, day: periods.day, month: periods.month,
                                   usageMonth: periods.utcMonth, freeQuota: config.freeMonthlyRequests)
        let giveBack = LateUndo(f, ledger: ledger)
        let result = try await Deadline.run(config.databaseDeadline, {
            try await begins.begin(item, key: key)
        }, onLateSuccess: { late in
            switch late {
            case .ok:
                await giveBack(reservationId: ownerId, scopes: claims.map(\.scope))
            case .claimsPartial(let got):
                try? await idempotency.release(tenantId: tenantId, scopes: Array(got), ownerId: ownerId, logger: logger)
            case .denied:
                break
            }
        })
        if case .ok = result {
            f.owned = claims.map(\.scope)
            f.reservationId = ownerId
            f.reservedWithClaims = true
            ProxyMetrics.reservationsHeld(delta: 1)
        }
        return result
    }

    /// Gives back what a reserve or begin left behind when it finished after its request was already answered 503
    /// (nothing was forwarded): the reservation is released and the claims dropped, recorded under the 503's audit row.
    struct LateUndo: Sendable {
        let ledger: SpendLedger
        let audit: AuditEvent
        let logger: Logger

        init(_ f: Flight, ledger: SpendLedger) {
            var audit = f.audit
            audit.decision = .denied
            audit.errorCode = KeybrakeError.unavailable.code
            audit.amountMicros = 0
            self.ledger = ledger
            self.audit = audit
            self.logger = f.logger
        }

        func callAsFunction(reservationId: String?, scopes: [String]) async {
            var undo = SpendLedger.Finish(audit: audit)
            if let reservationId {
                undo.reservationId = reservationId
                undo.outcome = "released"
            }
            undo.dropScopes = scopes
            try? await ledger.finish(undo, logger: logger)
        }
    }

    func replay(_ stored: StoredResponse, of ownerId: String, isDuplicate: Bool, _ f: inout Flight) async throws -> Response {
        // A replay moves no money, but is a proxied request: it counts against the quota.
        try await idempotency.release(tenantId: f.key.tenantId, scopes: f.owned, ownerId: f.audit.id, logger: f.logger)
        f.owned = []
        f.amount = .zero
        f.audit.amountMicros = 0
        let periods = Self.periods(now: clock.now(), timezone: f.key.policy.timezone)
        let result = try await ledger.reserve(
            keyId: f.key.id, tenantId: f.key.tenantId, amount: .zero, day: periods.day, month: periods.month,
            usageMonth: periods.utcMonth, freeQuota: config.freeMonthlyRequests, reservationId: f.audit.id, logger: f.logger
        )
        if case .denied(let code, let used, let cap) = result {
            throw Denial(error: reserveDenial(code: code, used: used, cap: cap, f, periods: periods))
        }
        f.audit.decision = .replayed
        f.audit.upstreamStatus = stored.status
        f.audit.duplicateOf = ownerId
        f.audit.overheadUs = Self.micros(ContinuousClock.now - f.started)
        var finish = SpendLedger.Finish(audit: f.audit)
        finish.outcome = nil
        try await ledger.finish(finish, logger: f.logger)
        ProxyMetrics.request(vendor: f.vendor.rawValue, decision: "replayed", code: nil)

        var headers = HTTPFields()
        for (name, value) in stored.headers { if let n = HTTPField.Name(name) { headers[n] = value } }
        headers[.idempotentReplayed] = "true"
        if isDuplicate { headers[.keybrakeDuplicateOf] = ownerId }
        if f.autoKey, let key = f.upstreamKey { headers[.keybrakeIdempotencyKey] = key }
        return Response(status: HTTPResponse.Status(code: stored.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: stored.body)))
    }

    // MARK: - Forward, settle, audit

    func forward(_ f: inout Flight, path: String, request: Request, body: ByteBuffer, creds: VendorCredentials) async throws -> Response {
        var headers: [(String, String)] = []
        for field in request.headers {
            let name = field.name.canonicalName
            if Forwarder.hopByHop.contains(name) || name == "authorization" || name.hasPrefix("x-keybrake-") || name == "idempotency-key" { continue }
            headers.append((field.name.rawName, field.value))
        }
        headers += Self.credentialHeaders(creds)
        if f.vendor != .twilio, let key = f.upstreamKey { headers.append(("Idempotency-Key", key)) }
        let query = request.uri.query.map { "?" + $0 } ?? ""
        let url = baseURL(f.vendor) + path + query

        let upstreamStart = ContinuousClock.now
        let sent: Result<Forwarder.UpstreamResponse, Forwarder.Failure>
        do {
            sent = .success(try await forwarder.send(method: f.method, url: url, headers: headers, body: body, logger: f.logger))
        } catch {
            sent = .failure(error)
        }
        let upstreamElapsed = ContinuousClock.now - upstreamStart
        ProxyMetrics.upstreamLatency(vendor: f.vendor.rawValue, nanoseconds: Self.nanos(upstreamElapsed))
        f.audit.upstreamUs = Self.micros(upstreamElapsed)
        f.audit.decision = .allowed

        var finish = SpendLedger.Finish(audit: f.audit)
        finish.reservationId = f.reservationId
        finish.countUsageMonth = f.countUsageMonth
        let response: Response
        switch sent {
        case .failure(let failure):
            // Nothing came back: the vendor may have acted. Keep the money counted; a retry resolves it.
            let timedOut = if case .timeout = failure { true } else { false }
            let error = timedOut
                ? KeybrakeError(status: 504, code: "upstream_timeout", message: "\(f.vendor.rawValue) did not answer in time; the outcome is unknown and the amount stays counted. Retry with the same request to settle it.")
                : KeybrakeError(status: 502, code: "upstream_error", message: "The connection to \(f.vendor.rawValue) failed; the outcome is unknown and the amount stays counted. Retry with the same request to settle it.")
            finish.outcome = "unknown"
            finish.audit.outcome = f.reservationId != nil ? .outcomeUnknown : nil
            finish.audit.errorCode = error.code
            finish.completeScopes = f.owned
            finish.recordState = "unknown"
            response = VendorErrorRenderer.response(error, vendor: f.vendor)
        case .success(let upstream):
            finish.audit.upstreamStatus = upstream.status
            finish.audit.upstreamRequestId = upstream.header("request-id") ?? upstream.header("twilio-request-id") ?? upstream.header("x-request-id")
            let stored = StoredResponse(status: upstream.status, headers: Self.replayableHeaders(upstream), body: Array(upstream.body.readableBytesView))
            finish.response = stored
            switch upstream.status {
            case 200..<300:
                finish.outcome = "settled"
                finish.actual = actualAmount(f, upstream: upstream)
                finish.audit.outcome = f.reservationId != nil ? .settled : nil
                if let actual = finish.actual { finish.audit.amountMicros = actual.micros }
                finish.completeScopes = f.owned
                finish.pricedObject = pricedObject(f, path: path, upstream: upstream)
            case 500...:
                finish.outcome = "unknown"
                finish.audit.outcome = f.reservationId != nil ? .outcomeUnknown : nil
                finish.completeScopes = f.owned
                finish.recordState = "unknown"
            default:
                // 4xx: the vendor refused; nothing moved. Stripe semantics: the same key replays the refusal,
                // but a fingerprint only ever replays successes.
                finish.outcome = "released"
                finish.audit.outcome = f.reservationId != nil ? .released : nil
                finish.completeScopes = f.owned.filter { !$0.hasPrefix("dup:") }
                finish.dropScopes = f.owned.filter { $0.hasPrefix("dup:") }
            }
            var headers = HTTPFields()
            for (name, value) in upstream.headers {
                guard let n = HTTPField.Name(name), !Forwarder.hopByHop.contains(n.canonicalName) else { continue }
                headers.append(HTTPField(name: n, value: value))
            }
            if f.autoKey, let key = f.upstreamKey { headers[.keybrakeIdempotencyKey] = key }
            if f.heldFromEarlier, let original = f.audit.resolves { headers[.keybrakeDuplicateOf] = original }
            response = Response(status: HTTPResponse.Status(code: upstream.status), headers: headers, body: .init(byteBuffer: upstream.body))
        }
        if f.reservationId != nil, !f.heldFromEarlier, finish.outcome != "unknown" { ProxyMetrics.reservationsHeld(delta: -1) }
        finish.audit.overheadUs = Self.micros(ContinuousClock.now - f.started - upstreamElapsed)
        ProxyMetrics.overhead(vendor: f.vendor.rawValue, nanoseconds: Self.nanos(ContinuousClock.now - f.started - upstreamElapsed))
        ProxyMetrics.request(vendor: f.vendor.rawValue, decision: "allowed", code: finish.audit.errorCode)
        do {
            try await ledger.finish(finish, logger: f.logger)
        } catch {
            // The vendor answered; the agent must see it. The reservation stays held (still counted against caps).
            f.logger.error("could not record settlement and audit", metadata: ["audit_id": "\(f.audit.id)", "error": "\(DatabaseErrors.map(error, logger: f.logger).code)"])
        }
        return response
    }

    /// The amount that really moved: Twilio reports its price; otherwise what was reserved.
    func actualAmount(_ f: Flight, upstream: Forwarder.UpstreamResponse) -> MicroUSD? {
        guard f.reservationId != nil else { return nil }
        if f.vendor == .twilio, let price = TwilioPricer.settledPrice(responseJSON: Data(upstream.body.readableBytesView)) {
            return min(price, f.amount)
        }
        return f.heldFromEarlier ? nil : f.amount
    }

    /// A PaymentIntent created (and priced) here, so its later confirm is not counted twice.
    func pricedObject(_ f: Flight, path: String, upstream: Forwarder.UpstreamResponse) -> String? {
        guard f.vendor == .stripe, f.method == "POST", path == "/v1/payment_intents", f.amount > .zero,
              let json = try? JSONSerialization.jsonObject(with: Data(upstream.body.readableBytesView)) as? [String: Any],
              let id = json["id"] as? String else { return nil }
        return id
    }

    // MARK: - Denials

    func deny(_ error: KeybrakeError, _ f: inout Flight) async -> Response {
        f.audit.decision = .denied
        f.audit.errorCode = error.code
        f.audit.amountMicros = f.heldFromEarlier ? f.audit.amountMicros : 0
        f.audit.overheadUs = Self.micros(ContinuousClock.now - f.started)
        var finish = SpendLedger.Finish(audit: f.audit)
        finish.dropScopes = f.owned
        // A denial is answered within the deadline even when Postgres is down; the audit write carries on
        // in the background and lands as soon as the database is back.
        let ledger = self.ledger, logger = f.logger, record = finish
        do {
            try await Deadline.run(config.databaseDeadline, { try await ledger.finish(record, logger: logger) })
        } catch {
            f.logger.error("could not audit a denial yet", metadata: ["audit_id": "\(f.audit.id)", "code": "\(DatabaseErrors.map(error, logger: f.logger).code)"])
        }
        ProxyMetrics.request(vendor: f.vendor.rawValue, decision: "denied", code: error.code)
        return VendorErrorRenderer.response(error, vendor: f.vendor)
    }

    func reserveDenial(code: String, used: Int64, cap: Int64, _ f: Flight, periods: Periods) -> KeybrakeError {
        let label = "'\(f.key.policy.label)' (\(f.key.id))"
        let what = f.audit.operation ?? "\(f.method) \(f.audit.path)"
        let need = f.amount
        switch code {
        case "vault_key_revoked":
            return KeybrakeError(status: 401, code: code, message: "Vault key \(label) was revoked. Ask its owner for a new key.")
        case "vault_key_expired":
            return KeybrakeError(status: 401, code: code, message: "Vault key \(label) has expired.")
        case "request_cap_exceeded":
            return KeybrakeError(status: 403, code: code,
                message: "\(what) would move \(MicroUSD(used)), above key \(label)'s max_request_usd of \(MicroUSD(cap)).")
        case "daily_usd_cap_exceeded":
            let retry = Self.seconds(until: periods.dayEnd, from: clock.now())
            return KeybrakeError(status: 429, code: code,
                message: "Daily cap of \(MicroUSD(cap)) reached for key \(label): \(MicroUSD(used)) already spent or reserved today (\(f.key.policy.timezone)), \(what) needs \(need). Resets at \(RFC3339.format(periods.dayEnd)) (in \(retry) s).",
                retryAfterSeconds: retry)
        case "monthly_usd_cap_exceeded":
            let retry = Self.seconds(until: periods.monthEnd, from: clock.now())
            return KeybrakeError(status: 429, code: code,
                message: "Monthly cap of \(MicroUSD(cap)) reached for key \(label): \(MicroUSD(used)) already spent or reserved this month, \(what) needs \(need). Resets at \(RFC3339.format(periods.monthEnd)) (in \(retry) s).",
                retryAfterSeconds: retry)
        case "monthly_quota_exceeded":
            let retry = Self.seconds(until: periods.utcMonthEnd, from: clock.now())
            return KeybrakeError(status: 429, code: code,
                message: "Free-plan quota of \(cap) proxied requests this month is used up (\(used) made). Resets at \(RFC3339.format(periods.utcMonthEnd)); the pro plan has no quota.",
                retryAfterSeconds: retry)
        default:
            return .internalError
        }
    }

    // MARK: - Helpers

    func plan(of f: Flight) async throws -> Plan? {
        guard let tenants else { return nil }
        if let cached = plans.get(f.key.tenantId) { return cached }
        guard let tenant = try await tenants.tenant(id: f.key.tenantId, logger: f.logger) else { return nil }
        plans.set(f.key.tenantId, tenant.plan)
        return tenant.plan
    }

    func baseURL(_ vendor: Vendor) -> String { config.upstreams[vendor] ?? "" }

    static func audit(for key: VaultKey, vendor: Vendor, method: String, path: String, request: Request) -> AuditEvent {
        var audit = AuditEvent(tenantId: key.tenantId, vendor: vendor.rawValue, method: method, path: String(path.prefix(512)))
        audit.keyId = key.id
        audit.keyLabel = key.policy.label
        audit.runId = AuditEvent.sanitize(request.headers[.keybrakeRunId], maxLength: 200)
        return audit
    }

    /// The vault key from `X-Keybrake-Key`, `Authorization: Bearer`, or HTTP Basic (the password; Twilio's SDK).
    static func vaultToken(_ headers: HTTPFields) -> String? {
        if let explicit = headers[.keybrakeKey], !explicit.isEmpty { return trimmed(explicit) }
        guard let auth = headers[.authorization] else { return nil }
        let parts = auth.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        switch parts[0].lowercased() {
        case "bearer": return trimmed(parts[1])
        case "basic":
            guard let data = Data(base64Encoded: trimmed(parts[1])),
                  let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":") else { return nil }
            return String(text[text.index(after: colon)...])
        default: return nil
        }
    }

    /// Without spaces and tabs at either end (Foundation's CharacterSet trimming is slow enough to show in profiles).
    static func trimmed(_ s: some StringProtocol) -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = s.firstIndex(where: { !blank($0) }), let last = s.lastIndex(where: { !blank($0) }) else { return "" }
        return String(s[first...last])
    }

    static func credentialHeaders(_ creds: VendorCredentials) -> [(String, String)] {
        switch creds {
        case .stripe(let key): [("Authorization", "Bearer \(key)")]
        case .resend(let key): [("Authorization", "Bearer \(key)")]
        case .twilio(let sid, let token): [("Authorization", "Basic " + Data("\(sid):\(token)".utf8).base64EncodedString())]
        }
    }

    /// Twilio paths carry an account SID; whatever the agent's SDK put there, the tenant's real one is used.
    static func substituteAccount(_ path: String, creds: VendorCredentials) -> String {
        guard case .twilio(let sid, _) = creds else { return path }
        var parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if let i = parts.firstIndex(of: "Accounts"), i + 1 < parts.count {
            let segment = parts[i + 1]
            // Keep an extension such as `AC….json` on the account resource itself.
            if let dot = segment.firstIndex(of: ".") { parts[i + 1] = sid + segment[dot...] } else { parts[i + 1] = sid }
        }
        return parts.joined(separator: "/")
    }

    static let replayedHeaderNames: Set<String> = ["content-type", "request-id", "stripe-version", "twilio-request-id", "x-request-id"]

    static func replayableHeaders(_ upstream: Forwarder.UpstreamResponse) -> [(String, String)] {
        upstream.headers.filter { replayedHeaderNames.contains($0.0.lowercased()) }.map { ($0.0.lowercased(), $0.1) }
    }

    struct Periods: Sendable {
        var day: String
        var month: String
        var dayEnd: Date
        var monthEnd: Date
        var utcMonth: String
        var utcMonthEnd: Date
    }

    /// Gregorian calendars per time zone: building one (ICU) costs far more than using it, so build each once.
    static let calendars = ExpiringCache<String, Calendar>(ttl: .seconds(3600), capacity: 1000)

    static func calendar(_ timezone: String) -> Calendar {
        if let cached = calendars.get(timezone) { return cached }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: timezone) ?? TimeZone(identifier: "UTC")!
        calendars.set(timezone, calendar)
        return calendar
    }

    /// The key's current day and month in its own time zone, and the UTC month for metering. Calendar arithmetic
    /// shows up in the request profile, and the answer only changes at midnight: each time zone's answer is kept
    /// for as long as it holds.
    static func periods(now: Date, timezone: String) -> Periods {
        if let cached = periodCache.get(timezone), now >= cached.validFrom, now < cached.validUntil { return cached.periods }
        let calendar = Self.calendar(timezone)
        let dayStart = calendar.startOfDay(for: now)
        let monthStart = calendar.date(from: calendar.dateComponents([.year, .month], from: now)) ?? dayStart
        let utc = Self.calendar("UTC")
        let utcMonthStart = utc.date(from: utc.dateComponents([.year, .month], from: now)) ?? now
        let periods = Periods(
            day: dateString(dayStart, calendar), month: dateString(monthStart, calendar),
            dayEnd: calendar.date(byAdding: .day, value: 1, to: dayStart) ?? now,
            monthEnd: calendar.date(byAdding: .month, value: 1, to: monthStart) ?? now,
            utcMonth: dateString(utcMonthStart, utc),
            utcMonthEnd: utc.date(byAdding: .month, value: 1, to: utcMonthStart) ?? now
        )
        periodCache.set(timezone, .init(periods: periods, validFrom: max(dayStart, utcMonthStart),
                                        validUntil: min(periods.dayEnd, periods.utcMonthEnd)))
        return periods
    }

    struct CachedPeriods: Sendable {
        var periods: Periods
        var validFrom: Date
        var validUntil: Date
    }

    static let periodCache = ExpiringCache<String, CachedPeriods>(ttl: .seconds(3600), capacity: 1000)

    static func dateString(_ date: Date, _ calendar: Calendar) -> String {
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        func pad(_ n: Int, _ width: Int) -> String {
            let digits = String(n)
            return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
        }
        return pad(c.year ?? 1970, 4) + "-" + pad(c.month ?? 1, 2) + "-" + pad(c.day ?? 1, 2)
    }

    static func seconds(until end: Date, from now: Date) -> Int { max(1, Int(end.timeIntervalSince(now).rounded(.up))) }

    static let hexDigits = Array("0123456789abcdef".utf8)

    static func sha256Hex(_ data: Data) -> String {
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in SHA256.hash(data: data) {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func micros(_ d: Duration) -> Int64 { d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000 }
    static func nanos(_ d: Duration) -> Int64 { d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000 }
}
