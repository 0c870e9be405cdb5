import Audit
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage

extension ProxyPipeline {
    /// The one catch: audits the denial and answers in the vendor's envelope. What the request held is given back as
    /// its money state says (`MoneyState.after(.denied)`): its own reservation and claims released, an earlier
    /// request's unknown outcome handed back to it, never dropped.
    func deny<A: VendorAdapter>(_ a: A, _ error: KeybrakeError, _ f: inout Flight) async -> Response {
        f.audit.decision = .denied
        f.audit.errorCode = error.code
        f.audit.amountMicros = 0
        f.audit.overheadUs = Self.micros(ContinuousClock.now - f.started)
        var finish = SpendLedger.Finish(audit: f.audit, ownerId: f.audit.id)
        apply(f.money.after(.denied), to: &finish, f)
        finish.audit.outcome = nil   // the denial's own row moved nothing
        // Past the database deadline, the reserve may still commit (and write this request's row) after this answer.
        finish.mayCompleteAWrittenRow = error.code == KeybrakeError.unavailable.code
        if case .reserved = f.money { ProxyMetrics.reservationsHeld(delta: -1) }
        // A denial is answered within the deadline even when Postgres is down; the audit write carries on
        // in the background and lands as soon as the database is back.
        let ledger = self.ledger, logger = f.logger, record = finish
        do {
            try await Deadline.run(config.databaseDeadline, { try await ledger.finish(record, logger: logger) })
        } catch {
            f.logger.error("could not audit a denial yet", metadata: ["audit_id": "\(f.audit.id)", "code": "\(DatabaseErrors.map(error, logger: f.logger).code)"])
        }
        ProxyMetrics.request(vendor: f.vendor.rawValue, decision: "denied", code: error.code)
        return a.errorResponse(error)
    }

    /// The message of a reserve denial: which limit, what was used, what the request needed, when it resets.
    func reserveDenial(code fullCode: String, used: Int64, cap: Int64, _ f: Flight, periods: KeyPeriods) -> KeybrakeError {
        // kb_reserve names the ancestor whose limit refused a child's request after a ':'.
        let parts = fullCode.split(separator: ":", maxSplits: 1).map(String.init)
        let code = parts[0]
        let label: String
        if parts.count == 2 {
            let ancestor = f.key.ancestors.first { $0.id == parts[1] }
            label = "'\(ancestor?.policy.label ?? "?")' (\(parts[1]), an ancestor of child key \(f.key.id))"
        } else {
            label = "'\(f.key.policy.label)' (\(f.key.id))"
        }
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
        case "total_usd_cap_exceeded":
            return KeybrakeError(status: 429, code: code,
                message: "Lifetime cap of \(MicroUSD(cap)) reached for key \(label): \(MicroUSD(used)) already spent or reserved, \(what) needs \(need). It does not reset; the key's owner can raise total_usd_cap.")
        case "monthly_quota_exceeded":
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
