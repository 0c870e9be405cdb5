import HTTPLayer
import KeybrakeCore

/// Vault keys created per tenant per minute, wherever they are created: `POST /v1/keys` and the dashboard's form
/// share one limiter. Each new key costs an argon2 hash (~27 ms of a core); without a limit one tenant's creations
/// would take the cores from every other tenant's first request (DESIGN §4).
public final class KeyCreationLimiter: Sendable {
    let window: WindowRateLimiter

    public init(perMinutePerTenant: Int) {
        window = WindowRateLimiter(limit: perMinutePerTenant, window: .seconds(60))
    }

    /// Counts one creation for `tenantId`, or throws 429 `rate_limited` with the seconds until the window resets.
    public func admit(tenantId: String) throws(KeybrakeError) {
        if let retry = window.hit(tenantId) {
            throw .rateLimited("This tenant is creating vault keys too fast; retry in \(retry) s.", retryAfter: retry)
        }
    }
}
