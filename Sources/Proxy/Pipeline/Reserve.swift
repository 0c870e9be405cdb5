import KeybrakeCore
import Storage
import Tenants

extension ProxyPipeline {
    /// Phase 7: caps, per-request max and quota, all or nothing, in one statement (kb_reserve). A request reserved
    /// with its claims has nothing left to do; a retry resuming an unknown outcome reserves nothing new (its amount is
    /// still held) but is counted against the quota and re-checks the key.
    func reserve(_ f: inout Flight, periods: KeyPeriods) async throws {
        if case .reserved = f.money { return }
        let amount: MicroUSD = if case .open = f.money { f.amount } else { .zero }
        if amount == .zero, try await plan(of: f) == .pro {
            // Nothing to reserve and no quota to enforce: count the request when it finishes instead.
            f.countUsageMonth = periods.utcMonth
            return
        }
        if let spent = quotaSpent.get(f.key.tenantId), spent.month == periods.utcMonth, spent.quota == Int64(config.freeMonthlyRequests) {
            // Known used up a moment ago (and a month's count only grows): refused without a statement.
            throw Denial(error: reserveDenial(code: "monthly_quota_exceeded", used: spent.used, cap: spent.quota, f, periods: periods))
        }
        let reserveId = f.audit.id, tenantId = f.key.tenantId, logger = f.logger
        let ledger = self.ledger, keyId = f.key.id, freeQuota = config.freeMonthlyRequests
        let giveBack = LateUndo(f, ledger: ledger), owned = f.owned, pending = Self.pendingAudit(f)
        let result = try await Deadline.run(config.databaseDeadline, {
            try await ledger.reserve(
                keyId: keyId, tenantId: tenantId, amount: amount, day: periods.day, month: periods.month,
                usageMonth: periods.utcMonth, freeQuota: freeQuota, reservationId: reserveId, pending: pending, logger: logger
            )
        }, onLateSuccess: { result in
            guard result == .ok else { return }
            await giveBack(reservationId: amount > .zero ? reserveId : nil, scopes: owned)
        })
        if case .denied(let code, let used, let cap) = result {
            rememberQuotaSpent(code: code, used: used, quota: cap, f, periods: periods)
            throw Denial(error: reserveDenial(code: code, used: used, cap: cap, f, periods: periods))
        }
        if amount > .zero {
            f.money = .reserved(reservationId: reserveId, amount: amount)
            ProxyMetrics.reservationsHeld(delta: 1)
        }
    }

    /// Remembers a tenant's used-up quota for `quotaSpent`'s few seconds (an upgrade to pro takes that long here).
    func rememberQuotaSpent(code: String, used: Int64, quota: Int64, _ f: Flight, periods: KeyPeriods) {
        guard code == "monthly_quota_exceeded" else { return }
        quotaSpent.set(f.key.tenantId, QuotaSpent(month: periods.utcMonth, used: used, quota: quota))
    }

    func plan(of f: Flight) async throws -> Plan? {
        guard let tenants else { return nil }
        if let cached = plans.get(f.key.tenantId) { return cached }
        let tenantId = f.key.tenantId, logger = f.logger
        guard let tenant = try await bounded({ try await tenants.tenant(id: tenantId, logger: logger) }) else { return nil }
        plans.set(f.key.tenantId, tenant.plan)
        return tenant.plan
    }
}

extension ProxyPipeline {
    /// A database call before the request goes upstream, under the database deadline (fail closed: 503 and nothing
    /// forwarded). A query sent on a connection Postgres has just closed can be stranded in PostgresNIO and never
    /// answer (postgres-nio #487, reverted by #501), so no call on this side of forwarding may wait unbounded.
    /// `Deadline.run` costs a task per call: the common path's calls (`claimAndReserve`, `reserve`) each have one
    /// already; this is for the others, which run only on colder paths (replays, waits, unknown outcomes, plan and
    /// lookup-pricing reads), so the hot path gains no task.
    func bounded<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T,
                              onLateSuccess: @escaping @Sendable (T) async -> Void = { _ in }) async throws -> T {
        try await Deadline.run(config.databaseDeadline, operation, onLateSuccess: onLateSuccess)
    }
}
