import HTTPLayer
import KeybrakeCore

/// One kind of admin action per tenant per minute, wherever it is taken (the API and the dashboard share one
/// limiter). Key creation: each new key costs an argon2 hash (~27 ms of a core), and without a limit one tenant's
/// creations would take the cores from every other tenant's first request (DESIGN §4). Key changes (PATCH, revoke):
/// each is announced to every replica and waits for their acknowledgement under a lock all tenants share.
public final class TenantActionLimiter: Sendable {
    let window: WindowRateLimiter
    /// What the tenant is doing too fast, for the 429's message ("creating vault keys").
    let action: String

    public init(perMinutePerTenant: Int, action: String = "creating vault keys") {
        window = WindowRateLimiter(limit: perMinutePerTenant, window: .seconds(60))
        self.action = action
    }

    /// Counts one action for `tenantId`, or throws 429 `rate_limited` with the seconds until the window resets.
    public func admit(tenantId: String) throws(KeybrakeError) {
        if let retry = window.hit(tenantId) {
            throw .rateLimited("This tenant is \(action) too fast; retry in \(retry) s.", retryAfter: retry)
        }
    }
}
