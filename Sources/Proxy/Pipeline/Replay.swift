import Audit
import HTTPLayer
import Hummingbird
import KeybrakeCore
import NIOCore
import Storage

extension ProxyPipeline {
    /// From the claim phase: an identical request (same Idempotency-Key, or the same fingerprint within the key's
    /// duplicate window) already has an answer. This one gives back its records, is counted like any proxied request
    /// (Reserve.swift, `countReplay`), is audited `replayed` pointing at the original, and answers with the stored
    /// response. It moves no money.
    func replay(_ stored: StoredResponse, of ownerId: String, isDuplicate: Bool, _ r: inout ProxiedRequest,
                                  periods: KeyPeriods) async throws -> Response {
        try await giveBackClaims(&r)
        r.price.amount = .zero
        r.audit.amountMicros = 0
        try await countReplay(r, periods: periods)
        r.audit.decision = .replayed
        r.audit.upstreamStatus = stored.status
        r.audit.duplicateOf = ownerId
        r.audit.overheadUs = (ContinuousClock.now - r.started).microseconds
        let ledger = self.ledger, logger = r.logger, finish = SpendLedger.Finish(audit: r.audit, ownerId: r.audit.id)
        try await bounded { try await ledger.finish(finish, logger: logger) }
        ProxyMetrics.request(vendor: r.vendor.rawValue, decision: "replayed", code: nil)

        var headers = HTTPFields()
        for (name, value) in stored.headers { if let n = HTTPField.Name(name) { headers[n] = value } }
        headers[.idempotentReplayed] = "true"
        if isDuplicate { headers[.keybrakeDuplicateOf] = ownerId }
        if r.upstreamKeyIsAutomatic, let key = r.upstreamKey { headers[.keybrakeIdempotencyKey] = key }
        return Response(status: HTTPResponse.Status(code: stored.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: stored.body)))
    }
}
