import Audit
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Keys
import Logging
import Storage

extension ProxyPipeline {
    enum Authenticated {
        case authenticated(ProxiedRequest)
        /// The key is known but refused (revoked, expired): audited like every denial.
        case denied(KeybrakeError, ProxiedRequest)
        /// No key, not a key, or a token not proven for its key: no audit row of its own.
        case answered(Response)
    }

    /// Phase 1: the vault key, from `X-Keybrake-Key`, `Authorization: Bearer` or HTTP Basic. `client` is who presents
    /// it: failed attempts are counted per client address, so a stranger who knows the key's id cannot lock out its holder.
    func authenticate<A: VendorAdapter>(_ a: A, rawPath: String, request: Request, client: RequestClient, logger: Logger,
                                        started: ContinuousClock.Instant) async -> Authenticated {
        let method = request.method.rawValue, vendor = a.vendor
        guard let token = VaultToken.from(request.headers) else {
            ProxyMetrics.request(vendor: vendor.rawValue, decision: "denied", code: ErrorCode.vaultKeyInvalid.rawValue)
            return .answered(a.errorResponse(VaultKeyAuthenticator.invalidError))
        }
        func proxied(_ key: VaultKey) -> ProxiedRequest {
            ProxiedRequest(vendor: vendor, method: method, started: started, logger: logger, key: key,
                   audit: Self.audit(for: key, vendor: vendor, method: method, path: rawPath, request: request))
        }
        do {
            let authenticator = self.authenticator, now = clock.now()
            switch try await bounded({ try await authenticator.authenticate(token: token, client: client, now: now, logger: logger) }) {
            case .success(let key):
                return .authenticated(proxied(key))
            case .failure(.invalid):
                ProxyMetrics.request(vendor: vendor.rawValue, decision: "denied", code: ErrorCode.vaultKeyInvalid.rawValue)
                logger.info("proxy request with an invalid vault key", metadata: ["vendor": "\(vendor.rawValue)"])
                return .answered(a.errorResponse(VaultKeyAuthenticator.invalidError))
            case .failure(.unverified(let key, let error)):
                // Not the holder, as far as anyone knows: summarised for the key's tenant, not audited one row each.
                unverifiedAttempts?.record(UnverifiedAttempts.Attempt(
                    tenantId: key.tenantId, keyId: key.id, keyLabel: key.policy.label, vendor: vendor.rawValue, method: method, path: rawPath))
                ProxyMetrics.request(vendor: vendor.rawValue, decision: "denied", code: error.code)
                return .answered(a.errorResponse(error))
            case .failure(.denied(let key, let error)):
                return .denied(error, proxied(key))
            }
        } catch {
            // The key could not be read (the database deadline under overload): 503, nothing sent, no tenant to audit.
            let mapped = DatabaseErrors.map(error, logger: logger)
            ProxyMetrics.request(vendor: vendor.rawValue, decision: "denied", code: mapped.code)
            return .answered(a.errorResponse(mapped))
        }
    }

    static func audit(for key: VaultKey, vendor: Vendor, method: String, path: String, request: Request) -> AuditEvent {
        var audit = AuditEvent(tenantId: key.tenantId, vendor: vendor.rawValue, method: method, path: String(path.prefix(512)))
        audit.keyId = key.id
        audit.keyLabel = key.policy.label
        // A child key minted for a run labels its rows with that run unless the request names another.
        audit.runId = AuditEvent.sanitize(request.headers[.keybrakeRunId], maxLength: 200) ?? key.runId
        return audit
    }
}
