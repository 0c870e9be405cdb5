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
    func deny<A: VendorAdapter>(_ a: A, _ error: KeybrakeError, _ r: inout ProxiedRequest) async -> Response {
        r.audit.decision = .denied
        r.audit.errorCode = error.code
        r.audit.amountMicros = 0
        r.audit.overheadUs = (ContinuousClock.now - r.started).microseconds
        var finish = SpendLedger.Finish(audit: r.audit, ownerId: r.audit.id)
        apply(r.money.after(.denied), to: &finish, r)
        finish.audit.outcome = nil   // the denial's own row moved nothing
        // Past the database deadline, the reserve may still commit (and write this request's row) after this answer.
        finish.auditRowMayExist = error.code == KeybrakeError.unavailable.code
        if case .reserved = r.money { ProxyMetrics.reservationsHeld(delta: -1) }
        // A denial is answered within the deadline even when Postgres is down; the audit write carries on
        // in the background and lands as soon as the database is back.
        let ledger = self.ledger, logger = r.logger, record = finish
        do {
            try await bounded({ try await ledger.finish(record, logger: logger) })
        } catch {
            r.logger.error("could not audit a denial yet", metadata: ["audit_id": "\(r.audit.id)", "code": "\(DatabaseErrors.map(error, logger: r.logger).code)"])
        }
        ProxyMetrics.request(vendor: r.vendor.rawValue, decision: "denied", code: error.code)
        return a.errorResponse(error)
    }
}
