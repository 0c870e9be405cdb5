import Audit
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import NIOCore
import Storage
import Vault

extension ProxyPipeline {
    /// Phases 8 and 9: forward with the real credential, then settle, complete the records and write the audit row,
    /// as the request's `MoneyState` says for what the upstream answered. The agent gets the vendor's answer even when
    /// the settle statement fails (the reservation then stays held, still counted).
    func forwardAndSettle<A: VendorAdapter>(_ a: A, _ f: inout Flight, path: String, query: String?, request: Request, body: ByteBuffer,
                                            creds: VendorCredentials) async -> Response {
        // By allowlist: what the vendor's SDKs send (the vault key, X-Keybrake-*, hop-by-hop headers and anything an
        // agent adds stay here); the credential and the Idempotency-Key are Keybrake's own.
        var headers: [(String, String)] = []
        for field in request.headers {
            let name = field.name.canonicalName
            if a.forwardedHeaders.contains(name) || config.extraForwardedHeaders.contains(name) { headers.append((field.name.rawName, field.value)) }
        }
        headers += a.credentialHeaders(creds)
        if a.deduplicatesIdempotencyKeys, let key = f.upstreamKey { headers.append(("Idempotency-Key", key)) }
        // The query string the adapter read (a POST's was refused): nothing unread goes upstream.
        let url = baseURL(f.vendor) + path + (query.map { "?" + $0 } ?? "")
        let mask = SecretMask(secrets: a.secrets(creds), fields: a.secretFields)

        // A call that moves no money and holds no records: its audit row is written while it is upstream.
        let writesEarly = f.money == .open && f.owned.isEmpty
        let ledger = self.ledger, early = f.audit, usageMonth = f.countUsageMonth, logger = f.logger
        async let writtenEarly: Bool = writesEarly ? ledger.auditEarly(early, countUsageMonth: usageMonth, logger: logger) : false

        let upstreamStart = ContinuousClock.now
        // A request that moves no money and stores no record streams its answer to the agent; the others read it
        // whole (settlement reads the body, records keep it for replay).
        let streams = f.money == .open && f.owned.isEmpty && f.countedObject == nil
        let sent: Result<Forwarder.UpstreamResponse, Forwarder.Failure>
        var streamed: ResponseBody?
        do {
            if streams {
                let head = try await forwarder.open(vendor: f.vendor, method: f.method, url: url, headers: headers, body: body, logger: f.logger)
                streamed = head.responseBody(masking: mask)
                sent = .success(Forwarder.UpstreamResponse(status: head.status, headers: head.headers, body: ByteBuffer()))
            } else {
                sent = .success(try await forwarder.send(vendor: f.vendor, method: f.method, url: url, headers: headers, body: body, logger: f.logger))
            }
        } catch {
            sent = .failure(error)
        }
        let upstreamElapsed = ContinuousClock.now - upstreamStart
        ProxyMetrics.upstreamLatency(vendor: f.vendor.rawValue, nanoseconds: Self.nanos(upstreamElapsed))
        f.audit.upstreamUs = Self.micros(upstreamElapsed)
        f.audit.decision = .allowed

        let response: Response
        let transition: MoneyState.Transition
        var finish = SpendLedger.Finish(audit: f.audit, ownerId: f.audit.id)
        finish.countUsageMonth = f.countUsageMonth
        switch sent {
        case .failure(let failure):
            let error: KeybrakeError
            switch failure {
            case .notSent:
                transition = f.money.after(.notSent)
                error = KeybrakeError(status: 502, code: "upstream_unreachable",
                    message: "Could not connect to \(f.vendor.rawValue); nothing was sent\(transition.outcome == .released ? " and the amount was released" : ""). Retry shortly.")
            case .busy:
                // Never sent: the same release as a refused connection, and a 503 the agent's SDK retries.
                transition = f.money.after(.notSent)
                error = Self.upstreamBusy(f.vendor, what: "this request", released: transition.outcome == .released)
            case .timeout:
                transition = f.money.after(.lost)
                error = KeybrakeError(status: 504, code: "upstream_timeout", message: "\(f.vendor.rawValue) did not answer in time; the outcome is unknown and the amount stays counted. Retry with the same request to settle it.")
            case .connection:
                transition = f.money.after(.lost)
                error = KeybrakeError(status: 502, code: "upstream_error", message: "The connection to \(f.vendor.rawValue) failed; the outcome is unknown and the amount stays counted. Retry with the same request to settle it.")
            }
            finish.audit.errorCode = error.code
            response = a.errorResponse(error)
        case .success(var upstream):
            if let masked = mask.masked(upstream.body) { upstream.body = masked }
            transition = f.money.after(.answered(status: upstream.status))
            finish.audit.upstreamStatus = upstream.status
            finish.audit.upstreamRequestId = a.upstreamRequestId(upstream)
            // The one copy of the body kept for replay, only when a record will store it.
            if !f.owned.isEmpty {
                finish.response = StoredResponse(status: upstream.status, headers: Self.replayableHeaders(upstream), body: Array(upstream.body.readableBytesView))
            }
            if (200..<300).contains(upstream.status) {
                finish.actual = actualAmount(a, f, upstream: upstream)
                if let actual = finish.actual { finish.audit.amountMicros = actual.micros }
                finish.countedObject = countedObject(f, upstream: upstream)
            }
            var out = HTTPFields()
            for (name, value) in upstream.headers {
                guard let n = HTTPField.Name(name), !Forwarder.hopByHop.contains(n.canonicalName) else { continue }
                out.append(HTTPField(name: n, value: value))
            }
            if f.autoKey, let key = f.upstreamKey { out[.keybrakeIdempotencyKey] = key }
            if case .resuming(let earlier, _) = f.money { out[.keybrakeDuplicateOf] = earlier }
            response = Response(status: HTTPResponse.Status(code: upstream.status), headers: out, body: streamed ?? .init(byteBuffer: upstream.body))
        }
        apply(transition, to: &finish, f)
        if case .reserved = f.money, transition.outcome != .outcomeUnknown { ProxyMetrics.reservationsHeld(delta: -1) }
        finish.audit.overheadUs = Self.micros(ContinuousClock.now - f.started - upstreamElapsed)
        ProxyMetrics.overhead(vendor: f.vendor.rawValue, nanoseconds: Self.nanos(ContinuousClock.now - f.started - upstreamElapsed))
        ProxyMetrics.request(vendor: f.vendor.rawValue, decision: "allowed", code: finish.audit.errorCode)
        let wroteEarly = await writtenEarly
        if wroteEarly, finish.isAuditOnly {
            ledger.completeEarlyRow(finish.audit, logger: f.logger)
        } else {
            // An early write that failed may still have committed: complete that row if it exists, else insert one.
            if writesEarly { finish.mayCompleteAWrittenRow = true }
            await settle(finish, f)
        }
        return response
    }

    /// The settle statement, retried a few times when it fails (a dropped connection, a failover): the vendor has
    /// answered and the agent must see it. What still fails is left to the lease: the reservation stays counted and
    /// any replica turns it into an unknown outcome when the request's lease runs out.
    func settle(_ finish: SpendLedger.Finish, _ f: Flight) async {
        for (attempt, pause) in [Duration.zero, .milliseconds(50), .milliseconds(250), .seconds(1)].enumerated() {
            if pause > .zero { try? await Task.sleep(for: pause) }
            do {
                try await ledger.finish(finish, logger: f.logger)
                return
            } catch {
                f.logger.error("could not record settlement and audit", metadata: [
                    "audit_id": "\(f.audit.id)", "attempt": "\(attempt + 1)", "error": "\(DatabaseErrors.map(error, logger: f.logger).code)"])
            }
        }
    }

    /// Turns a transition of the money state into the settle statement's arguments.
    func apply(_ t: MoneyState.Transition, to finish: inout SpendLedger.Finish, _ f: Flight) {
        finish.audit.outcome = t.outcome
        switch t.reservation {
        case .none: break
        case .settle(let id): finish.reservationId = id; finish.outcome = "settled"
        case .release(let id): finish.reservationId = id; finish.outcome = "released"
        case .markUnknown(let id): finish.reservationId = id; finish.outcome = "unknown"
        }
        switch t.records {
        case .complete(let toDuplicates):
            let kept = toDuplicates ? f.owned : f.owned.filter { !$0.hasPrefix("dup:") }
            finish.completeScopes = kept
            finish.completeWindows = kept.map { scope in
                Int32(clamping: f.claims.first { $0.scope == scope }?.window.components.seconds ?? 0)
            }
            finish.dropScopes = f.owned.filter { !kept.contains($0) }
        case .unknown, .restoreUnknown:
            // Unknown outcomes are sticky: kept for the idempotency TTL, whatever the request's own window.
            finish.completeScopes = f.owned
            finish.completeWindows = f.owned.map { _ in Int32(clamping: config.idempotencyTTL.components.seconds) }
            finish.recordState = "unknown"
            if case .restoreUnknown(let earlier) = t.records { finish.restoreOwner = earlier }
            finish.response = nil
        case .drop:
            finish.dropScopes = f.owned
        }
    }

    /// The amount that really moved: what the vendor reports (Twilio's price, above the estimate too: the ledger must
    /// count at least what moved); otherwise what was reserved.
    func actualAmount<A: VendorAdapter>(_ a: A, _ f: Flight, upstream: Forwarder.UpstreamResponse) -> MicroUSD? {
        guard case .reserved = f.money else { return nil }
        return a.settledAmount(responseBody: upstream.body) ?? f.amount
    }

    /// The object whose counted amount grows with this settlement (its later capture or confirm is priced above it).
    func countedObject(_ f: Flight, upstream: Forwarder.UpstreamResponse) -> String? {
        guard case .reserved = f.money, let object = f.countedObject else { return nil }
        switch object {
        case .existing(let id): return id
        case .createdByThisRequest:
            guard let id = ExactJSON.parse(Data(upstream.body.readableBytesView))?["id"]?.stringValue else { return nil }
            return id
        }
    }

    /// 503 `upstream_busy`: the vendor's connection budget on this replica stayed full for the whole bounded wait.
    /// Nothing was sent, so the agent may retry at once elsewhere or after `Retry-After`.
    static func upstreamBusy(_ vendor: Vendor, what: String, released: Bool = false) -> KeybrakeError {
        KeybrakeError(status: 503, code: "upstream_busy",
            message: "Every connection to \(vendor.rawValue) is busy; \(what) was not sent\(released ? " and the amount was released" : ""). Retry after the Retry-After seconds.",
            retryAfterSeconds: 1)
    }

    static let replayedHeaderNames: Set<String> = ["content-type", "request-id", "stripe-version", "twilio-request-id", "x-request-id"]

    static func replayableHeaders(_ upstream: Forwarder.UpstreamResponse) -> [(String, String)] {
        upstream.headers.filter { replayedHeaderNames.contains($0.0.lowercased()) }.map { ($0.0.lowercased(), $0.1) }
    }

    static func micros(_ d: Duration) -> Int64 { d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000 }
    static func nanos(_ d: Duration) -> Int64 { d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000 }
}
