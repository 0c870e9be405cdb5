import Audit
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import NIOCore
import Storage

extension ProxyPipeline {
    /// Phase 9: settle, complete the records and write the audit row, as the request's `MoneyState` says for what the
    /// upstream answered. The agent gets the vendor's answer even when the settle statement fails (the reservation
    /// then stays held, still counted).
    func settle<A: VendorAdapter>(_ a: A, _ r: inout ProxiedRequest, _ answer: UpstreamAnswer) async -> Response {
        let response: Response
        let transition: MoneyState.Transition
        var finish = SpendLedger.Finish(audit: r.audit, ownerId: r.audit.id)
        finish.countUsageMonth = r.quota.monthCountedWhenFinished
        switch answer.sent {
        case .failure(let failure):
            let error: KeybrakeError
            switch failure {
            case .notSent:
                transition = r.money.after(.notSent)
                error = KeybrakeError(status: 502, code: .upstreamUnreachable,
                    message: "Could not connect to \(r.vendor.rawValue); nothing was sent\(transition.outcome == .released ? " and the amount was released" : ""). Retry shortly.")
            case .busy:
                // Never sent: the same release as a refused connection, and a 503 the agent's SDK retries.
                transition = r.money.after(.notSent)
                error = Self.upstreamBusy(r.vendor, what: "this request", released: transition.outcome == .released)
            case .timeout:
                transition = r.money.after(.lost)
                error = KeybrakeError(status: 504, code: .upstreamTimeout, message: "\(r.vendor.rawValue) did not answer in time; the outcome is unknown and the amount stays counted. Retry with the same request to settle it.")
            case .connection:
                transition = r.money.after(.lost)
                error = KeybrakeError(status: 502, code: .upstreamError, message: "The connection to \(r.vendor.rawValue) failed; the outcome is unknown and the amount stays counted. Retry with the same request to settle it.")
            }
            finish.audit.errorCode = error.code
            response = a.errorResponse(error)
        case .success(var upstream):
            if let masked = answer.mask.masked(upstream.body) { upstream.body = masked }
            transition = r.money.after(.answered(status: upstream.status))
            finish.audit.upstreamStatus = upstream.status
            finish.audit.upstreamRequestId = a.upstreamRequestId(upstream)
            // The one copy of the body kept for replay, only when a record will store it.
            if !r.records.held.isEmpty {
                let kept = upstream.headers.filter { a.replayedResponseHeaders.contains($0.0.lowercased()) }.map { ($0.0.lowercased(), $0.1) }
                finish.response = StoredResponse(status: upstream.status, headers: kept, body: Array(upstream.body.readableBytesView))
            }
            if (200..<300).contains(upstream.status) {
                finish.actual = actualAmount(a, r, upstream: upstream)
                if let actual = finish.actual { finish.audit.amountMicros = actual.micros }
                finish.countedObject = countedObject(r, upstream: upstream)
            }
            var out = HTTPFields()
            for (name, value) in upstream.headers {
                guard let n = HTTPField.Name(name), !Forwarder.hopByHop.contains(n.canonicalName) else { continue }
                out.append(HTTPField(name: n, value: value))
            }
            if r.upstreamKeyIsAutomatic, let key = r.upstreamKey { out[.keybrakeIdempotencyKey] = key }
            if case .resuming(let earlier, _) = r.money { out[.keybrakeDuplicateOf] = earlier }
            response = Response(status: HTTPResponse.Status(code: upstream.status), headers: out, body: answer.streamed ?? .init(byteBuffer: upstream.body))
        }
        apply(transition, to: &finish, r)
        if case .reserved = r.money, transition.outcome != .outcomeUnknown { ProxyMetrics.reservationsHeld(delta: -1) }
        let overhead = ContinuousClock.now - r.started - answer.elapsed
        finish.audit.overheadUs = overhead.microseconds
        ProxyMetrics.overhead(vendor: r.vendor.rawValue, nanoseconds: overhead.nanoseconds)
        ProxyMetrics.request(vendor: r.vendor.rawValue, decision: "allowed", code: finish.audit.errorCode)
        switch answer.earlyRow {
        case .written where finish.isAuditOnly:
            ledger.completeEarlyRow(finish.audit, logger: r.logger)
        case .written, .mayBeWritten:
            finish.auditRowMayExist = true
            await recordSettlement(finish, r)
        case .notAttempted:
            await recordSettlement(finish, r)
        }
        return response
    }

    /// The settle statement, retried a few times when it fails (a dropped connection, a failover): the vendor has
    /// answered and the agent must see it. What still fails is left to the lease: the reservation stays counted and
    /// any replica turns it into an unknown outcome when the request's lease runs out.
    ///
    /// The agent waits for it at most the database deadline, like every other database call of the request: a
    /// statement sent into a cut network, or stranded on a connection Postgres closed, or a wait for a pool connection
    /// while Postgres is down, would otherwise hold the agent's answer (and a drain) until the connection failed, up
    /// to the pool's minute-long give-up. Past the deadline the attempts go on, detached and in order: a settlement
    /// that lands late is still the right one (it needs no undo), and the lease covers one that never does.
    func recordSettlement(_ finish: SpendLedger.Finish, _ r: ProxiedRequest) async {
        let ledger = self.ledger, logger = r.logger, auditId = r.audit.id
        do {
            try await Deadline.run(config.databaseDeadline, hearsCancellation: false, leavesWorkRunning: true) {
                for (attempt, pause) in [Duration.zero, .milliseconds(50), .milliseconds(250), .seconds(1)].enumerated() {
                    if pause > .zero { try? await Task.sleep(for: pause) }
                    do {
                        try await ledger.finish(finish, logger: logger)
                        return
                    } catch {
                        logger.error("could not record settlement and audit", metadata: [
                            "audit_id": "\(auditId)", "attempt": "\(attempt + 1)", "error": "\(DatabaseErrors.map(error, logger: logger).code)"])
                    }
                }
            }
        } catch {
            logger.warning("settlement and audit not recorded within the database deadline; the agent gets the vendor's answer, the attempts go on",
                           metadata: ["audit_id": "\(auditId)"])
        }
    }

    /// Turns a transition of the money state into the settle statement's arguments.
    func apply(_ t: MoneyState.Transition, to finish: inout SpendLedger.Finish, _ r: ProxiedRequest) {
        finish.audit.outcome = t.outcome
        switch t.reservation {
        case .none: break
        case .settle(let id): finish.reservationId = id; finish.outcome = "settled"
        case .release(let id): finish.reservationId = id; finish.outcome = "released"
        case .markUnknown(let id): finish.reservationId = id; finish.outcome = "unknown"
        }
        switch t.records {
        case .complete(let toDuplicates):
            let kept = toDuplicates ? r.records.held : r.records.held.filter { !$0.hasPrefix("dup:") }
            finish.completeScopes = kept
            finish.completeWindows = kept.map(r.records.windowSeconds(of:))
            finish.dropScopes = r.records.held.filter { !kept.contains($0) }
        case .unknown, .restoreUnknown:
            // Unknown outcomes are sticky: kept for the idempotency TTL, whatever the request's own window.
            finish.completeScopes = r.records.held
            finish.completeWindows = r.records.held.map { _ in Int32(clamping: config.idempotencyTTL.components.seconds) }
            finish.recordState = "unknown"
            if case .restoreUnknown(let earlier) = t.records { finish.restoreOwner = earlier }
            finish.response = nil
        case .drop:
            finish.dropScopes = r.records.held
        }
    }

    /// The amount that really moved: what the vendor reports (Twilio's price, above the estimate too: the ledger must
    /// count at least what moved); otherwise what was reserved.
    func actualAmount<A: VendorAdapter>(_ a: A, _ r: ProxiedRequest, upstream: Forwarder.UpstreamResponse) -> MicroUSD? {
        guard case .reserved = r.money else { return nil }
        return a.settledAmount(responseBody: upstream.body) ?? r.price.amount
    }

    /// The object whose counted amount grows with this settlement (its later capture or confirm is priced above it).
    func countedObject(_ r: ProxiedRequest, upstream: Forwarder.UpstreamResponse) -> String? {
        guard case .reserved = r.money, let object = r.price.countedObject else { return nil }
        switch object {
        case .existing(let id): return id
        case .createdByThisRequest:
            guard let id = ExactJSON.parse(Data(upstream.body.readableBytesView))?["id"]?.stringValue else { return nil }
            return id
        }
    }
}
