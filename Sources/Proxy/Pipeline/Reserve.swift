import Audit
import Foundation
import HTTPLayer
import KeybrakeCore
import Logging
import Storage
import Tenants

/// Reserving, in one place (DESIGN §7): caps, per-request max, key status and the free quota, all or nothing, in one
/// statement. Three callers, one rule each:
/// - `reserve`, phase 7, for a request that has not reserved yet;
/// - `claimAndReserve`, from the claim phase, for a POST whose amount is known: its records and its reservation in
///   one statement (kb_claim_and_reserve, group-committed per key by `ClaimReserveBatcher`);
/// - `countReplay`, from the replay: nothing reserved, but a replay is a proxied request (quota, key status).
/// Whatever commits after its request was already answered 503 is given back by `LateCommitUndo`.
extension ProxyPipeline {
    /// Phase 7. A request reserved with its claims has nothing left to do; a retry resuming an unknown outcome
    /// reserves nothing new (its amount is still held) but is counted against the quota and re-checks the key.
    func reserve(_ r: inout ProxiedRequest, periods: KeyPeriods) async throws {
        if case .reserved = r.money { return }
        let amount: MicroUSD = if case .open = r.money { r.price.amount } else { .zero }
        if amount == .zero, try await plan(of: r) == .pro {
            // Nothing to reserve and no quota to enforce: count the request when it finishes instead.
            r.quota = .whenFinished(utcMonth: periods.utcMonth)
            return
        }
        if let spent = quotaSpent.get(r.key.tenantId), spent.month == periods.utcMonth, spent.quota == Int64(config.freeMonthlyRequests) {
            // Known used up a moment ago (and a month's count only grows): refused without a statement.
            throw Denial(error: refusalMessage(code: ErrorCode.monthlyQuotaExceeded.rawValue, used: spent.used, cap: spent.quota, r, periods: periods))
        }
        let reserveId = r.audit.id, tenantId = r.key.tenantId, logger = r.logger
        let ledger = self.ledger, keyId = r.key.id, freeQuota = config.freeMonthlyRequests
        let undo = LateCommitUndo(r, ledger: ledger), held = r.records.held, pending = Self.pendingAudit(r)
        let result = try await bounded({
            try await ledger.reserve(
                keyId: keyId, tenantId: tenantId, amount: amount, day: periods.day, month: periods.month,
                usageMonth: periods.utcMonth, freeQuota: freeQuota, reservationId: reserveId, pending: pending, logger: logger
            )
        }, onLateSuccess: { result in
            guard result == .ok else { return }
            await undo(reservationId: amount > .zero ? reserveId : nil, scopes: held)
        })
        if case .denied(let code, let used, let cap) = result { throw refusal(code: code, used: used, cap: cap, r, periods: periods) }
        if amount > .zero { hold(amount, &r) }
    }

    /// The first claim of a request whose amount is known: its records (`r.records.claims`) and its reservation in one
    /// statement. Nil: every record claimed and the amount reserved; otherwise another request holds some record, and
    /// this is the set this request did get (nothing reserved).
    func claimAndReserve(_ r: inout ProxiedRequest, periods: KeyPeriods) async throws -> Set<String>? {
        let claimsAndReserves = self.claimsAndReserves, idempotency = self.idempotency, logger = r.logger
        let tenantId = r.key.tenantId, ownerId = r.audit.id, claims = r.records.claims
        let item = ClaimReserveBatcher.Item(claims: claims, ownerId: ownerId, amount: r.price.amount, pending: Self.pendingAudit(r), logger: logger)
        let key = ClaimReserveBatcher.Key(keyId: r.key.id, tenantId: tenantId, day: periods.day, month: periods.month,
                                   usageMonth: periods.utcMonth, freeQuota: config.freeMonthlyRequests)
        let undo = LateCommitUndo(r, ledger: ledger)
        let result = try await bounded({
            try await claimsAndReserves.claimAndReserve(item, key: key)
        }, onLateSuccess: { late in
            switch late {
            case .ok:
                await undo(reservationId: ownerId, scopes: claims.map(\.scope))
            case .claimsPartial(let got):
                try? await idempotency.release(tenantId: tenantId, scopes: Array(got), ownerId: ownerId, logger: logger)
            case .denied:
                break
            }
        })
        switch result {
        case .ok:
            r.records.held = claims.map(\.scope)
            hold(r.price.amount, &r)
            return nil
        case .claimsPartial(let got):
            return got
        case .denied(let code, let used, let cap):
            throw refusal(code: code, used: used, cap: cap, r, periods: periods)
        }
    }

    /// A replay moves no money, but is a proxied request: counted against the quota, and the key re-checked.
    func countReplay(_ r: ProxiedRequest, periods: KeyPeriods) async throws {
        let ledger = self.ledger, keyId = r.key.id, tenantId = r.key.tenantId, freeQuota = config.freeMonthlyRequests
        let reservationId = r.audit.id, logger = r.logger
        let result = try await bounded {
            try await ledger.reserve(keyId: keyId, tenantId: tenantId, amount: .zero, day: periods.day, month: periods.month,
                                     usageMonth: periods.utcMonth, freeQuota: freeQuota, reservationId: reservationId, logger: logger)
        }
        if case .denied(let code, let used, let cap) = result { throw refusal(code: code, used: used, cap: cap, r, periods: periods) }
    }

    private func hold(_ amount: MicroUSD, _ r: inout ProxiedRequest) {
        r.money = .reserved(reservationId: r.audit.id, amount: amount)
        ProxyMetrics.reservationsHeld(delta: 1)
    }

    /// A refused reserve as the denial the agent reads. A used-up quota is remembered for `quotaSpent`'s few seconds
    /// (an upgrade to pro takes that long here), so the next refusals cost no statement.
    private func refusal(code: String, used: Int64, cap: Int64, _ r: ProxiedRequest, periods: KeyPeriods) -> Denial {
        if code == ErrorCode.monthlyQuotaExceeded.rawValue {
            quotaSpent.set(r.key.tenantId, QuotaSpent(month: periods.utcMonth, used: used, quota: cap))
        }
        return Denial(error: refusalMessage(code: code, used: used, cap: cap, r, periods: periods))
    }

    func plan(of r: ProxiedRequest) async throws -> Plan? {
        guard let tenants else { return nil }
        if let cached = plans.get(r.key.tenantId) { return cached }
        let tenantId = r.key.tenantId, logger = r.logger
        guard let tenant = try await bounded({ try await tenants.tenant(id: tenantId, logger: logger) }) else { return nil }
        plans.set(r.key.tenantId, tenant.plan)
        return tenant.plan
    }

    /// The audit row a request that reserves money writes with its reservation, before it is forwarded: marked
    /// `in_flight` until its settle completes it (or the lease sweep marks it `lease_expired`).
    static func pendingAudit(_ r: ProxiedRequest) -> AuditEvent {
        var pending = r.audit
        pending.decision = .allowed
        pending.state = .inFlight
        pending.amountMicros = r.price.amount.micros
        return pending
    }

    /// Gives back what a reserve (or a claim and reserve) left behind when it committed after its request was already
    /// answered 503 (nothing was forwarded): the reservation is released and the records dropped, recorded in an audit
    /// row of its own (a new id that `resolves` the 503's row: one id, one row).
    struct LateCommitUndo: Sendable {
        let ledger: SpendLedger
        let audit: AuditEvent
        let logger: Logger

        init(_ r: ProxiedRequest, ledger: SpendLedger) {
            var audit = AuditEvent(tenantId: r.audit.tenantId, vendor: r.audit.vendor, method: r.audit.method, path: r.audit.path)
            audit.keyId = r.audit.keyId
            audit.keyLabel = r.audit.keyLabel
            audit.runId = r.audit.runId
            audit.decision = .resolved
            audit.errorCode = ErrorCode.lateReservationReleased.rawValue
            audit.resolves = r.audit.id
            audit.outcome = .released
            self.ledger = ledger
            self.audit = audit
            self.logger = r.logger
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
}

extension ProxyPipeline {
    /// The message of a reserve refusal: which limit, what was used, what the request needed, when it resets.
    func refusalMessage(code fullCode: String, used: Int64, cap: Int64, _ r: ProxiedRequest, periods: KeyPeriods) -> KeybrakeError {
        // kb_reserve names the ancestor whose limit refused a child's request after a ':'.
        let parts = fullCode.split(separator: ":", maxSplits: 1).map(String.init)
        let label: String
        if parts.count == 2 {
            let ancestor = r.key.ancestors.first { $0.id == parts[1] }
            label = "'\(ancestor?.policy.label ?? "?")' (\(parts[1]), an ancestor of child key \(r.key.id))"
        } else {
            label = "'\(r.key.policy.label)' (\(r.key.id))"
        }
        let what = r.audit.operation ?? "\(r.method) \(r.audit.path)"
        let need = r.price.amount
        guard let code = ErrorCode(rawValue: parts[0]) else { return .internalError }
        switch code {
        case .vaultKeyRevoked:
            return KeybrakeError(status: 401, code: code, message: "Vault key \(label) was revoked. Ask its owner for a new key.")
        case .vaultKeyExpired:
            return KeybrakeError(status: 401, code: code, message: "Vault key \(label) has expired.")
        case .requestCapExceeded:
            return KeybrakeError(status: 403, code: code,
                message: "\(what) would move \(MicroUSD(used)), above key \(label)'s max_request_usd of \(MicroUSD(cap)).")
        case .dailyUSDCapExceeded:
            let retry = Self.seconds(until: periods.dayEnd, from: clock.now())
            return KeybrakeError(status: 429, code: code,
                message: "Daily cap of \(MicroUSD(cap)) reached for key \(label): \(MicroUSD(used)) already spent or reserved today (\(r.key.policy.timezone)), \(what) needs \(need). Resets at \(RFC3339.format(periods.dayEnd)) (in \(retry) s).",
                retryAfterSeconds: retry)
        case .monthlyUSDCapExceeded:
            let retry = Self.seconds(until: periods.monthEnd, from: clock.now())
            return KeybrakeError(status: 429, code: code,
                message: "Monthly cap of \(MicroUSD(cap)) reached for key \(label): \(MicroUSD(used)) already spent or reserved this month, \(what) needs \(need). Resets at \(RFC3339.format(periods.monthEnd)) (in \(retry) s).",
                retryAfterSeconds: retry)
        case .totalUSDCapExceeded:
            return KeybrakeError(status: 429, code: code,
                message: "Lifetime cap of \(MicroUSD(cap)) reached for key \(label): \(MicroUSD(used)) already spent or reserved, \(what) needs \(need). It does not reset; the key's owner can raise total_usd_cap.")
        case .monthlyQuotaExceeded:
            let retry = Self.seconds(until: periods.utcMonthEnd, from: clock.now())
            return KeybrakeError(status: 429, code: code,
                message: "Free-plan quota of \(cap) proxied requests this month is used up (\(used) made). Resets at \(RFC3339.format(periods.utcMonthEnd)); the pro plan has no quota.",
                retryAfterSeconds: retry)
        default:
            return .internalError
        }
    }

    static func seconds(until end: Date, from now: Date) -> Int { max(1, Int(end.timeIntervalSince(now).rounded(.up))) }
}
