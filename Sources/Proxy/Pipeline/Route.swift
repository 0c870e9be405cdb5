import Audit
import Foundation
import Hummingbird
import KeybrakeCore
import NIOCore
import Storage
import Vault

extension ProxyPipeline {
    /// Phase 2: the key's vendor, the tenant's credentials, the normalized path (never a credential endpoint) against
    /// the allowlist, the endpoint's money class against the key's caps, and the accounts the headers name (the adapter's check).
    func route<A: VendorAdapter>(_ a: A, _ r: inout ProxiedRequest, rawPath: String, request: Request) async throws -> (path: String, creds: VendorCredentials) {
        let policy = r.key.policy
        guard policy.vendor == r.vendor else {
            throw Denial(error: KeybrakeError(status: 403, code: .vendorNotAllowed,
                message: "This vault key (\(r.key.id)) is for \(policy.vendor.rawValue); it cannot call \(r.vendor.rawValue)."))
        }
        // A run id labels audit rows people read: no control or bidi-control characters (DESIGN §16).
        if let run = request.headers[.keybrakeRunId], let refusal = DisplayText.refusal(run, field: "X-Keybrake-Run-Id") {
            throw Denial(error: refusal)
        }
        // Credentials are needed to route Twilio paths, and to forward.
        let credentials = self.credentials, vendor = r.vendor, tenantId = r.key.tenantId, logger = r.logger
        // A cache hit costs no round trip, so it needs no deadline (and none of its timer and task hops).
        let found: VendorCredentials?
        switch credentials.cacheLookup(vendor: vendor, tenantId: tenantId) {
        case .hit(let cached): found = cached
        case .noneStored: found = nil
        case .miss:
            found = try await bounded({
                try await credentials.cachedCredentials(vendor: vendor, tenantId: tenantId, logger: logger)
            })
        }
        guard let creds = found else {
            throw Denial(error: KeybrakeError(status: 403, code: .vendorCredentialsMissing,
                message: "No \(r.vendor.rawValue) credentials are stored for this tenant. Store them with PUT /v1/vendors/\(r.vendor.rawValue)/credentials."))
        }
        let path: String
        switch PathNormalizer.normalize(rawPath) {
        case .success(let normalized): path = a.upstreamPath(normalized, credentials: creds)
        case .failure(let rejection):
            throw Denial(error: KeybrakeError(status: 403, code: .endpointNotAllowed,
                message: "Request refused: \(rejection.reason). Send a plain path without encoded slashes or dot segments."))
        }
        r.audit.path = path
        r.audit.operation = a.operationName(method: r.method, path: path)
        let what = r.audit.operation.map { "\($0) (\(r.method) \(path))" } ?? "\(r.method) \(path)"
        let registry = a.registry
        r.endpoint = registry.lookup(method: r.method, normalizedPath: path)
        // An endpoint that reveals or creates a vendor credential: never forwarded for a vault key, whatever it allows.
        if let endpoint = r.endpoint, endpoint.money == .credential {
            throw Denial(error: KeybrakeError(status: 403, code: .endpointNotAllowed,
                message: "\(what) is never forwarded for a vault key: \(endpoint.reason ?? "it reveals a vendor credential"). Use the \(r.vendor.displayName) dashboard with the account's own login for it."))
        }
        // A child key's request must be allowed by every ancestor too (a parent narrowed after its child was minted).
        for key in r.key.chain where !key.patterns.allows(method: r.method, normalizedPath: path) {
            let whose = key.id == r.key.id ? "key" : "the parent key"
            throw Denial(error: KeybrakeError(status: 403, code: .endpointNotAllowed,
                message: "\(what) is not allowed for \(whose) '\(key.policy.label)' (\(key.id)); it allows: \(key.policy.allowedEndpoints.joined(separator: ", "))."))
        }
        // No allowlist entry opens a route around the cap: on a capped key, an endpoint that moves money Keybrake
        // cannot price, or a POST the registry does not know, is refused before anything is claimed or sent.
        if r.key.chainIsCapped, registry.moneyClass(method: r.method, normalizedPath: path) == .unpriced {
            let why = r.endpoint?.reason.map { "it moves money Keybrake cannot price before it moves (\($0))" }
                ?? "Keybrake does not know this endpoint, so it cannot tell whether or how much money it moves"
            throw Denial(error: KeybrakeError(status: 403, code: .endpointNotPriced,
                message: "\(what) is refused on capped key '\(policy.label)' (\(r.key.id)): \(why). Use a key without caps for it."))
        }
        do {
            try a.readHeaders(request.headers)
        } catch {
            throw Denial(error: error)
        }
        // Audited before the check, so a refused account's row names it.
        r.audit.vendorAccount = AuditEvent.sanitize(a.auditedAccount(request.headers))
        do {
            try a.checkAccounts(request.headers, chain: r.key.chain)
        } catch {
            throw Denial(error: error)
        }
        return (path, creds)
    }

    /// The request as the vendor will read it (the adapter's rules), or a 400 naming what is not forwarded.
    func readRequest<A: VendorAdapter>(_ a: A, _ r: ProxiedRequest, path: String, request: Request, body: Data) throws -> VendorRequest {
        do {
            return try a.read(method: r.method, path: path, query: request.uri.query, headers: request.headers, body: body)
        } catch {
            throw Denial(error: error)
        }
    }

    /// The body, and its bytes as `Data` once for pricing and fingerprinting (the buffer is what is forwarded).
    func collectBody(_ request: Request) async throws -> (buffer: ByteBuffer, data: Data) {
        do {
            let buffer = try await request.body.collect(upTo: config.maxRequestBody)
            return (buffer, Data(buffer.readableBytesView))
        } catch {
            throw Denial(error: KeybrakeError(status: 413, code: .bodyTooLarge, message: "Request bodies are limited to \(config.maxRequestBody / 1024) KiB."))
        }
    }
}
