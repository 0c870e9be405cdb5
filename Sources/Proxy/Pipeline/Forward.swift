import Audit
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import NIOCore
import Storage
import Vault

extension ProxyPipeline {
    /// What the forward phase brings back for the settle phase.
    struct UpstreamAnswer {
        var sent: Result<Forwarder.UpstreamResponse, Forwarder.Failure>
        /// The vendor's body on its way to the agent, for a request that streams its answer (`streamsAnswer`).
        var streamed: ResponseBody?
        var elapsed: Duration
        /// Masks the tenant's secrets in what comes back.
        var mask: SecretMask
        var earlyRow: EarlyAuditRow
    }

    /// The audit row of an audit-only request (`ProxiedRequest.isAuditOnly`) is written while it is upstream.
    enum EarlyAuditRow {
        /// Not an audit-only request: the settle statement writes its row.
        case notAttempted
        case written
        /// The write failed, but may still have committed: the settle statement completes that row if it exists.
        case mayBeWritten
    }

    /// Phase 8: forward with the real credential, the headers the vendor's SDKs send (by the adapter's allowlist), the
    /// upstream Idempotency-Key, and only the query string the adapter read.
    func forward<A: VendorAdapter>(_ a: A, _ r: inout ProxiedRequest, path: String, query: String?, request: Request, body: ByteBuffer,
                                   creds: VendorCredentials) async -> UpstreamAnswer {
        // By allowlist: what the vendor's SDKs send (the vault key, X-Keybrake-*, hop-by-hop headers and anything an
        // agent adds stay here); the credential and the Idempotency-Key are Keybrake's own.
        var headers: [(String, String)] = []
        for field in request.headers {
            let name = field.name.canonicalName
            if a.forwardedHeaders.contains(name) || config.extraForwardedHeaders.contains(name) { headers.append((field.name.rawName, field.value)) }
        }
        headers += a.credentialHeaders(creds)
        if let header = a.idempotencyKeyHeader, let key = r.upstreamKey { headers.append((header, key)) }
        // The query string the adapter read (a POST's was refused): nothing unread goes upstream.
        let url = baseURL(r.vendor) + path + (query.map { "?" + $0 } ?? "")
        let mask = SecretMask(secrets: a.secrets(creds), fields: a.secretFields)

        let writesEarly = r.isAuditOnly
        let ledger = self.ledger, early = r.audit, usageMonth = r.quota.monthCountedWhenFinished, logger = r.logger
        async let writtenEarly: Bool = writesEarly ? ledger.auditEarly(early, countUsageMonth: usageMonth, logger: logger) : false

        let upstreamStart = ContinuousClock.now
        let sent: Result<Forwarder.UpstreamResponse, Forwarder.Failure>
        var streamed: ResponseBody?
        do {
            if r.streamsAnswer {
                let head = try await forwarder.open(vendor: r.vendor, method: r.method, url: url, headers: headers, body: body, logger: r.logger)
                streamed = head.responseBody(masking: mask)
                sent = .success(Forwarder.UpstreamResponse(status: head.status, headers: head.headers, body: ByteBuffer()))
            } else {
                sent = .success(try await forwarder.send(vendor: r.vendor, method: r.method, url: url, headers: headers, body: body, logger: r.logger))
            }
        } catch {
            sent = .failure(error)
        }
        let elapsed = ContinuousClock.now - upstreamStart
        ProxyMetrics.upstreamLatency(vendor: r.vendor.rawValue, nanoseconds: elapsed.nanoseconds)
        r.audit.upstreamUs = elapsed.microseconds
        r.audit.decision = .allowed
        let earlyRow: EarlyAuditRow = !writesEarly ? .notAttempted : await writtenEarly ? .written : .mayBeWritten
        return UpstreamAnswer(sent: sent, streamed: streamed, elapsed: elapsed, mask: mask, earlyRow: earlyRow)
    }

    /// 503 `upstream_busy`: the vendor's connection budget on this replica stayed full for the whole bounded wait.
    /// Nothing was sent, so the agent may retry at once elsewhere or after `Retry-After`.
    static func upstreamBusy(_ vendor: Vendor, what: String, released: Bool = false) -> KeybrakeError {
        KeybrakeError(status: 503, code: .upstreamBusy,
            message: "Every connection to \(vendor.rawValue) is busy; \(what) was not sent\(released ? " and the amount was released" : ""). Retry after the Retry-After seconds.",
            retryAfterSeconds: 1)
    }

}
