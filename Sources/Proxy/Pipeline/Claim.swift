import Audit
import Crypto
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Logging
import NIOCore
import Storage

extension ProxyPipeline {
    /// Phase 5 (POST only): claims the request's Idempotency-Key record and, for a request that moves money, its
    /// duplicate fingerprint. Returns a replay when an identical request already succeeded (or finishes while this one
    /// waits); takes over an identical request's unknown outcome where the vendor deduplicates; throws a Denial for
    /// key reuse, in-flight timeouts and unknown outcomes it may not retry. A request whose amount is already known
    /// reserves in the same statement as its claims (Reserve.swift, `claimAndReserve`).
    func claim<A: VendorAdapter>(_ a: A, _ r: inout ProxiedRequest, path: String, request: Request, body: Data, decision: PricingDecision,
               periods: KeyPeriods) async throws -> Response? {
        let claims = records(a, &r, path: path, request: request, body: body, movesMoney: decision != .free)
        guard !claims.isEmpty else { return nil }
        r.records.claims = claims
        let reserveWithClaims = if case .priced = decision, r.price.amount > .zero { true } else { false }

        let deadline = ContinuousClock.now + config.inFlightWait
        // Bounded by the deadline (in-flight waits) and by a generous attempt count (records vanishing under us).
        attempts: for attempt in 0..<2_000 {
            let idempotency = self.idempotency, tenantId = r.key.tenantId, ownerId = r.audit.id, logger = r.logger, toClaim = claims
            let claimed: Set<String>
            if attempt == 0, reserveWithClaims {
                guard let partial = try await claimAndReserve(&r, periods: periods) else { return nil }
                claimed = partial
            } else {
                claimed = try await bounded({
                    try await idempotency.claim(toClaim, tenantId: tenantId, ownerId: ownerId, logger: logger)
                }, onLateSuccess: { late in
                    try? await idempotency.release(tenantId: tenantId, scopes: Array(late), ownerId: ownerId, logger: logger)
                })
            }
            r.records.held = Array(claimed)
            for claim in claims where !claimed.contains(claim.scope) {
                let scope = claim.scope
                guard let record = try await bounded({ try await idempotency.record(tenantId: tenantId, scope: scope, logger: logger) }) else {
                    try await giveBackClaims(&r)
                    continue attempts  // expired or dropped meanwhile: claim again
                }
                let isDup = claim.scope.hasPrefix("dup:")
                if !isDup, record.requestHash != claim.requestHash {
                    try await giveBackClaims(&r)
                    throw Denial(error: KeybrakeError(status: 400, code: .idempotencyKeyReused,
                        message: "Idempotency-Key \(r.upstreamKey ?? "") was already used with a different request body. Use a new key for a different request."))
                }
                switch record.state {
                case "completed":
                    guard let response = record.response else {
                        try await giveBackClaims(&r)
                        continue attempts
                    }
                    return try await replay(response, of: record.ownerId, isDuplicate: isDup, &r, periods: periods)
                case "unknown":
                    do {
                        try await resume(a, record, scope: claim.scope, &r)
                    } catch is RetryClaim {
                        continue attempts
                    }
                default:  // in_flight: wait for it, on whichever replica it runs
                    try await giveBackClaims(&r)
                    if ContinuousClock.now >= deadline {
                        throw Denial(error: KeybrakeError(status: 409, code: isDup ? ErrorCode.duplicateInFlight : .idempotencyKeyInUse,
                            message: isDup
                                ? "An identical request (audit \(record.ownerId)) is still in flight; retry to receive its result."
                                : "A request with this Idempotency-Key (audit \(record.ownerId)) is still in flight; retry to receive its result."))
                    }
                    // Waiting for another request is not database work: the seat goes to someone else meanwhile.
                    releaseSeat(&r)
                    try await Task.sleep(for: .milliseconds(15))
                    guard await admit(&r) else { throw Denial(error: tenantBusy) }
                    continue attempts
                }
            }
            return nil
        }
        throw Denial(error: KeybrakeError(status: 409, code: .idempotencyKeyInUse, message: "This request's idempotency record is contended; retry."))
    }

    /// The records a POST claims: its Idempotency-Key's (the agent's, or an automatic one made from the request), its
    /// duplicate fingerprint's when it moves money, or else a bare lease so a dead replica's reservation is found.
    /// Sets the upstream key the request will carry.
    func records<A: VendorAdapter>(_ a: A, _ r: inout ProxiedRequest, path: String, request: Request, body: Data,
                                   movesMoney: Bool) -> [IdempotencyStore.Claim] {
        let canonical = CanonicalBody.canonical(contentType: request.headers[.contentType], body: body)
        // Headers that change what the vendor does are part of what the request is (the same body for another
        // connected account is another charge).
        let variant = a.behaviourHeaders(request.headers)
        let bodyHash = Self.sha256Hex(canonical + Data(variant.utf8))
        var claims: [IdempotencyStore.Claim] = []
        // While in flight every record lives for the request's lease only; once completed, for its own window.
        let lease = config.lease
        var idemKey = AuditEvent.sanitize(request.headers[.idempotencyKey])
        if idemKey == nil, r.key.policy.autoIdempotency {
            idemKey = "kb_\(r.key.id.dropFirst(4))_" + Self.sha256Hex(Data("\(r.method)\n\(path)\n\(variant)\n".utf8) + canonical)
            r.upstreamKeyIsAutomatic = true
        }
        if let idemKey {
            r.upstreamKey = idemKey
            r.audit.idempotencyKey = idemKey
            r.audit.idempotencyAuto = r.upstreamKeyIsAutomatic
            claims.append(.init(scope: "idem:\(r.vendor.rawValue):\(r.method):\(path):\(variant):\(idemKey)", requestHash: bodyHash,
                                ttl: lease, upstreamKey: idemKey, window: config.idempotencyTTL))
        } else if movesMoney, a.deduplicatesIdempotencyKeys {
            // Every priced POST goes upstream with a key, so a retry of an unknown outcome can be sent again safely.
            r.upstreamKey = "kb_\(r.key.id.dropFirst(4))_r" + Identifier.randomBase62(count: 22)
        }
        if movesMoney, r.key.policy.duplicateWindowSeconds > 0 {
            let fingerprint = Self.sha256Hex(CanonicalBody.fingerprintInput(
                parts: [r.key.tenantId, r.vendor.rawValue, r.method, path, variant], canonicalBody: canonical))
            let window = Duration.seconds(r.key.policy.duplicateWindowSeconds)
            // A short window must not let a parallel identical request take over a live record: in flight, the lease.
            claims.append(.init(scope: "dup:\(fingerprint)", requestHash: fingerprint, ttl: lease,
                                upstreamKey: r.upstreamKey, window: window))
        }
        if claims.isEmpty, movesMoney {
            // No key and no duplicate guard: the request still holds one record while in flight, so that if its
            // replica dies, the lease sweep finds its held reservation and turns it into an unknown outcome.
            claims.append(.init(scope: "lease:\(r.audit.id)", requestHash: "", ttl: lease, upstreamKey: r.upstreamKey, window: .zero))
        }
        return claims
    }

    /// An identical request's outcome is unknown. Where the vendor deduplicates on the upstream Idempotency-Key that
    /// request carried, this one takes it over and is sent again with that key (its 2xx settles the amount held);
    /// otherwise 409 `outcome_unknown` until the tenant resolves it.
    func resume<A: VendorAdapter>(_ a: A, _ record: IdempotencyStore.Record, scope: String, _ r: inout ProxiedRequest) async throws {
        let vendor = r.vendor
        let refusal = { (why: String) in
            Denial(error: KeybrakeError(status: 409, code: .outcomeUnknown,
                message: "An identical request (audit \(record.ownerId)) has an unknown outcome: \(why) Check with \(vendor.rawValue), then resolve audit \(record.ownerId) (POST /v1/audit/\(record.ownerId)/resolve) before retrying."))
        }
        guard a.deduplicatesIdempotencyKeys else {
            try await giveBackClaims(&r)
            throw refusal("\(r.vendor.rawValue) cannot deduplicate a retry, so it may already have acted.")
        }
        guard let upstreamKey = record.upstreamKey else {
            try await giveBackClaims(&r)
            throw refusal("it went upstream without an Idempotency-Key, so a retry could act twice.")
        }
        if case .resuming(let earlier, _) = r.money, earlier != record.ownerId {
            try await giveBackClaims(&r)
            throw refusal("this request also matches another request's record.")
        }
        let idempotency = self.idempotency, tenantId = r.key.tenantId, newOwner = r.audit.id, keyId = r.key.id
        let lease = config.lease, logger = r.logger, earlier = record.ownerId
        let takeOver = try await bounded({
            try await idempotency.takeOverUnknown(tenantId: tenantId, scope: scope, newOwner: newOwner, keyId: keyId, lease: lease, logger: logger)
        }, onLateSuccess: { late in
            // Answered 503 meanwhile: the unknown outcome goes back to the request it belongs to.
            guard case .taken = late else { return }
            try? await idempotency.restoreUnknown(tenantId: tenantId, scopes: [scope], ownerId: newOwner, earlierOwner: earlier, logger: logger)
        })
        switch takeOver {
        case .taken(let reservationId):
            r.records.held.append(scope)
            r.money = .resuming(earlierAuditId: record.ownerId, reservationId: reservationId)
            r.upstreamKey = upstreamKey
            r.audit.idempotencyKey = upstreamKey
            r.audit.resolves = record.ownerId
        case .heldByAnotherKey:
            try await giveBackClaims(&r)
            throw refusal("it was made with another vault key, whose caps hold its amount.")
        case .gone:
            // Someone else resumed it first (or it expired): claim again and wait for them.
            try await giveBackClaims(&r)
            throw RetryClaim()
        }
    }

    struct RetryClaim: Error {}

    /// Gives back what this request holds before it answers without going upstream: its own claims are dropped, an
    /// earlier request's unknown outcome goes back to that request (never dropped).
    func giveBackClaims(_ r: inout ProxiedRequest) async throws {
        let idempotency = self.idempotency, tenantId = r.key.tenantId, scopes = r.records.held, ownerId = r.audit.id, logger = r.logger
        if case .resuming(let earlier, _) = r.money {
            try await bounded { try await idempotency.restoreUnknown(tenantId: tenantId, scopes: scopes, ownerId: ownerId, earlierOwner: earlier, logger: logger) }
        } else if !scopes.isEmpty {
            try await bounded { try await idempotency.release(tenantId: tenantId, scopes: scopes, ownerId: ownerId, logger: logger) }
        }
        r.records.held = []
        if case .resuming = r.money {
            r.money = .open
            r.audit.resolves = nil
        }
    }

    static func sha256Hex(_ data: Data) -> String { Hex.lowercase(SHA256.hash(data: data)) }
}
