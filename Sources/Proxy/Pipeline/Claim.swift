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
    /// reserves in the same statement as its claims.
    func claim<A: VendorAdapter>(_ a: A, _ f: inout Flight, path: String, request: Request, body: Data, decision: PricingDecision,
               periods: KeyPeriods) async throws -> Response? {
        let movesMoney = decision != .free
        let canonical = CanonicalBody.canonical(contentType: request.headers[.contentType], body: body)
        // Headers that change what the vendor does are part of what the request is (the same body for another
        // connected account is another charge).
        let variant = a.behaviourHeaders(request.headers)
        let bodyHash = Self.sha256Hex(canonical + Data(variant.utf8))
        var claims: [IdempotencyStore.Claim] = []
        // While in flight every record lives for the request's lease only; once completed, for its own window.
        let lease = config.lease
        var idemKey = AuditEvent.sanitize(request.headers[.idempotencyKey])
        if idemKey == nil, f.key.policy.autoIdempotency {
            idemKey = "kb_\(f.key.id.dropFirst(4))_" + Self.sha256Hex(Data("\(f.method)\n\(path)\n\(variant)\n".utf8) + canonical)
            f.autoKey = true
        }
        if let idemKey {
            f.upstreamKey = idemKey
            f.audit.idempotencyKey = idemKey
            f.audit.idempotencyAuto = f.autoKey
            claims.append(.init(scope: "idem:\(f.vendor.rawValue):\(f.method):\(path):\(variant):\(idemKey)", requestHash: bodyHash,
                                ttl: lease, upstreamKey: idemKey, window: config.idempotencyTTL))
        } else if movesMoney, a.deduplicatesIdempotencyKeys {
            // Every priced POST goes upstream with a key, so a retry of an unknown outcome can be sent again safely.
            f.upstreamKey = "kb_\(f.key.id.dropFirst(4))_r" + Identifier.randomBase62(count: 22)
        }
        if movesMoney, f.key.policy.duplicateWindowSeconds > 0 {
            let fingerprint = Self.sha256Hex(CanonicalBody.fingerprintInput(
                parts: [f.key.tenantId, f.vendor.rawValue, f.method, path, variant], canonicalBody: canonical))
            let window = Duration.seconds(f.key.policy.duplicateWindowSeconds)
            // A short window must not let a parallel identical request take over a live record: in flight, the lease.
            claims.append(.init(scope: "dup:\(fingerprint)", requestHash: fingerprint, ttl: lease,
                                upstreamKey: f.upstreamKey, window: window))
        }
        if claims.isEmpty, movesMoney {
            // No key and no duplicate guard: the request still holds one record while in flight, so that if its
            // replica dies, the lease sweep finds its held reservation and turns it into an unknown outcome.
            claims.append(.init(scope: "lease:\(f.audit.id)", requestHash: "", ttl: lease, upstreamKey: f.upstreamKey, window: .zero))
        }
        guard !claims.isEmpty else { return nil }
        f.claims = claims
        let reserveWithClaims = if case .priced = decision, f.amount > .zero { true } else { false }

        let deadline = ContinuousClock.now + config.inFlightWait
        // Bounded by the deadline (in-flight waits) and by a generous attempt count (records vanishing under us).
        attempts: for attempt in 0..<2_000 {
            let idempotency = self.idempotency, tenantId = f.key.tenantId, ownerId = f.audit.id, logger = f.logger, toClaim = claims
            let claimed: Set<String>
            if attempt == 0, reserveWithClaims {
                switch try await claimAndReserve(&f, claims: claims, periods: periods) {
                case .ok:
                    return nil
                case .claimsPartial(let got):
                    claimed = got
                case .denied(let code, let used, let cap):
                    rememberQuotaSpent(code: code, used: used, quota: cap, f, periods: periods)
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
                let scope = claim.scope
                guard let record = try await bounded({ try await idempotency.record(tenantId: tenantId, scope: scope, logger: logger) }) else {
                    try await giveBackClaims(&f)
                    continue attempts  // expired or dropped meanwhile: claim again
                }
                let isDup = claim.scope.hasPrefix("dup:")
                if !isDup, record.requestHash != claim.requestHash {
                    try await giveBackClaims(&f)
                    throw Denial(error: KeybrakeError(status: 400, code: "idempotency_key_reused",
                        message: "Idempotency-Key \(idemKey ?? "") was already used with a different request body. Use a new key for a different request."))
                }
                switch record.state {
                case "completed":
                    guard let response = record.response else {
                        try await giveBackClaims(&f)
                        continue attempts
                    }
                    return try await replay(response, of: record.ownerId, isDuplicate: isDup, &f)
                case "unknown":
                    do {
                        try await resume(a, record, scope: claim.scope, &f)
                    } catch is RetryClaim {
                        continue attempts
                    }
                default:  // in_flight: wait for it, on whichever replica it runs
                    try await giveBackClaims(&f)
                    if ContinuousClock.now >= deadline {
                        throw Denial(error: KeybrakeError(status: 409, code: isDup ? "duplicate_in_flight" : "idempotency_key_in_use",
                            message: isDup
                                ? "An identical request (audit \(record.ownerId)) is still in flight; retry to receive its result."
                                : "A request with this Idempotency-Key (audit \(record.ownerId)) is still in flight; retry to receive its result."))
                    }
                    // Waiting for another request is not database work: the seat goes to someone else meanwhile.
                    releaseSeat(&f)
                    try await Task.sleep(for: .milliseconds(15))
                    guard await admit(&f) else { throw Denial(error: tenantBusy) }
                    continue attempts
                }
            }
            return nil
        }
        throw Denial(error: KeybrakeError(status: 409, code: "idempotency_key_in_use", message: "This request's idempotency record is contended; retry."))
    }

    /// An identical request's outcome is unknown. Where the vendor deduplicates on the upstream Idempotency-Key that
    /// request carried, this one takes it over and is sent again with that key (its 2xx settles the amount held);
    /// otherwise 409 `outcome_unknown` until the tenant resolves it.
    func resume<A: VendorAdapter>(_ a: A, _ record: IdempotencyStore.Record, scope: String, _ f: inout Flight) async throws {
        let vendor = f.vendor
        let refusal = { (why: String) in
            Denial(error: KeybrakeError(status: 409, code: "outcome_unknown",
                message: "An identical request (audit \(record.ownerId)) has an unknown outcome: \(why) Check with \(vendor.rawValue), then resolve audit \(record.ownerId) (POST /v1/audit/\(record.ownerId)/resolve) before retrying."))
        }
        guard a.deduplicatesIdempotencyKeys else {
            try await giveBackClaims(&f)
            throw refusal("\(f.vendor.rawValue) cannot deduplicate a retry, so it may already have acted.")
        }
        guard let upstreamKey = record.upstreamKey else {
            try await giveBackClaims(&f)
            throw refusal("it went upstream without an Idempotency-Key, so a retry could act twice.")
        }
        if case .resuming(let earlier, _) = f.money, earlier != record.ownerId {
            try await giveBackClaims(&f)
            throw refusal("this request also matches another request's record.")
        }
        let idempotency = self.idempotency, tenantId = f.key.tenantId, newOwner = f.audit.id, keyId = f.key.id
        let lease = config.lease, logger = f.logger, earlier = record.ownerId
        let takeOver = try await bounded({
            try await idempotency.takeOverUnknown(tenantId: tenantId, scope: scope, newOwner: newOwner, keyId: keyId, lease: lease, logger: logger)
        }, onLateSuccess: { late in
            // Answered 503 meanwhile: the unknown outcome goes back to the request it belongs to.
            guard case .taken = late else { return }
            try? await idempotency.restoreUnknown(tenantId: tenantId, scopes: [scope], ownerId: newOwner, earlierOwner: earlier, logger: logger)
        })
        switch takeOver {
        case .taken(let reservationId):
            f.owned.append(scope)
            f.money = .resuming(earlierAuditId: record.ownerId, reservationId: reservationId)
            f.upstreamKey = upstreamKey
            f.audit.idempotencyKey = upstreamKey
            f.audit.resolves = record.ownerId
        case .heldByAnotherKey:
            try await giveBackClaims(&f)
            throw refusal("it was made with another vault key, whose caps hold its amount.")
        case .gone:
            // Someone else resumed it first (or it expired): claim again and wait for them.
            try await giveBackClaims(&f)
            throw RetryClaim()
        }
    }

    struct RetryClaim: Error {}

    /// The audit row a request that reserves money writes with its reservation, before it is forwarded: marked
    /// `in_flight` until its settle completes it (or the lease sweep marks it `lease_expired`).
    static func pendingAudit(_ f: Flight) -> AuditEvent {
        var pending = f.audit
        pending.decision = .allowed
        pending.state = .inFlight
        pending.amountMicros = f.amount.micros
        return pending
    }

    /// Gives back what this request holds before it answers without going upstream: its own claims are dropped, an
    /// earlier request's unknown outcome goes back to that request (never dropped).
    func giveBackClaims(_ f: inout Flight) async throws {
        let idempotency = self.idempotency, tenantId = f.key.tenantId, scopes = f.owned, ownerId = f.audit.id, logger = f.logger
        if case .resuming(let earlier, _) = f.money {
            try await bounded { try await idempotency.restoreUnknown(tenantId: tenantId, scopes: scopes, ownerId: ownerId, earlierOwner: earlier, logger: logger) }
        } else if !scopes.isEmpty {
            try await bounded { try await idempotency.release(tenantId: tenantId, scopes: scopes, ownerId: ownerId, logger: logger) }
        }
        f.owned = []
        if case .resuming = f.money {
            f.money = .open
            f.audit.resolves = nil
        }
    }

    /// First claim of a request whose amount is known: claims and reserve in one statement (kb_claim_and_reserve).
    func claimAndReserve(_ f: inout Flight, claims: [IdempotencyStore.Claim], periods: KeyPeriods) async throws -> SpendLedger.ClaimReserveResult {
        let begins = self.begins, idempotency = self.idempotency, logger = f.logger
        let tenantId = f.key.tenantId, ownerId = f.audit.id
        let item = ClaimReserveBatcher.Item(claims: claims, ownerId: ownerId, amount: f.amount, pending: Self.pendingAudit(f), logger: logger)
        let key = ClaimReserveBatcher.Key(keyId: f.key.id, tenantId: tenantId, day: periods.day, month: periods.month,
                                   usageMonth: periods.utcMonth, freeQuota: config.freeMonthlyRequests)
        let giveBack = LateUndo(f, ledger: ledger)
        let result = try await Deadline.run(config.databaseDeadline, {
            try await begins.claimAndReserve(item, key: key)
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
            f.money = .reserved(reservationId: ownerId, amount: f.amount)
            ProxyMetrics.reservationsHeld(delta: 1)
        }
        return result
    }

    /// Gives back what a reserve or begin left behind when it finished after its request was already answered 503
    /// (nothing was forwarded): the reservation is released and the claims dropped, recorded in an audit row of its
    /// own (a new id that `resolves` the 503's row: one id, one row).
    struct LateUndo: Sendable {
        let ledger: SpendLedger
        let audit: AuditEvent
        let logger: Logger

        init(_ f: Flight, ledger: SpendLedger) {
            var audit = AuditEvent(tenantId: f.audit.tenantId, vendor: f.audit.vendor, method: f.audit.method, path: f.audit.path)
            audit.keyId = f.audit.keyId
            audit.keyLabel = f.audit.keyLabel
            audit.runId = f.audit.runId
            audit.decision = .resolved
            audit.errorCode = "late_reservation_released"
            audit.resolves = f.audit.id
            audit.outcome = .released
            self.ledger = ledger
            self.audit = audit
            self.logger = f.logger
        }

        func callAsFunction(reservationId: String?, scopes: [String]) async {
            var undo = SpendLedger.Finish(audit: audit, ownerId: audit.resolves ?? audit.id)
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
        try await giveBackClaims(&f)
        f.amount = .zero
        f.audit.amountMicros = 0
        let periods = KeyCalendar.periods(now: clock.now(), timezone: f.key.policy.timezone)
        let ledger = self.ledger, keyId = f.key.id, tenantId = f.key.tenantId, freeQuota = config.freeMonthlyRequests
        let reservationId = f.audit.id, logger = f.logger
        let result = try await bounded {
            try await ledger.reserve(keyId: keyId, tenantId: tenantId, amount: .zero, day: periods.day, month: periods.month,
                                     usageMonth: periods.utcMonth, freeQuota: freeQuota, reservationId: reservationId, logger: logger)
        }
        if case .denied(let code, let used, let cap) = result {
            throw Denial(error: reserveDenial(code: code, used: used, cap: cap, f, periods: periods))
        }
        f.audit.decision = .replayed
        f.audit.upstreamStatus = stored.status
        f.audit.duplicateOf = ownerId
        f.audit.overheadUs = Self.micros(ContinuousClock.now - f.started)
        let finish = SpendLedger.Finish(audit: f.audit, ownerId: f.audit.id)
        try await bounded { try await ledger.finish(finish, logger: logger) }
        ProxyMetrics.request(vendor: f.vendor.rawValue, decision: "replayed", code: nil)

        var headers = HTTPFields()
        for (name, value) in stored.headers { if let n = HTTPField.Name(name) { headers[n] = value } }
        headers[.idempotentReplayed] = "true"
        if isDuplicate { headers[.keybrakeDuplicateOf] = ownerId }
        if f.autoKey, let key = f.upstreamKey { headers[.keybrakeIdempotencyKey] = key }
        return Response(status: HTTPResponse.Status(code: stored.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: stored.body)))
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func sha256Hex(_ data: Data) -> String { hex(SHA256.hash(data: data)) }
}
