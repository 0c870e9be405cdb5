/// Every machine code a client can see: `error.code` in the admin JSON, the vendor envelopes' code, the
/// `Keybrake-Error-Code` header, `error_code` on audit rows and the `code` label of `keybrake_proxy_requests_total`.
/// One line each says what it means; the HTTP status lives where the error is built (some codes have two).
/// The raw value is the wire spelling: never rename one, clients match on it.
///
/// Not client codes, and so not here: the refusals SQL functions hand back to their callers (`kb_resolve`'s
/// `amount_too_large`, `already_<state>`, `no_reservation`; `kb_claim_and_reserve`'s `claims_partial`), which those
/// callers turn into codes of this list, and what audit rows record outside `error_code` (their `state`: `in_flight`,
/// `lease_expired`; see `AuditEvent`), and `unverified_attempts`, the code of the rows that sum up unproven tokens
/// (`UnverifiedAttempts`).
public enum ErrorCode: String, CaseIterable, Sendable {
    // MARK: Any route
    /// 400: a request field is missing or malformed (`field` names it).
    case invalidRequest = "invalid_request"
    /// 404: no such route, or no such object for this tenant.
    case notFound = "not_found"
    /// 405: the route exists but not with this method.
    case methodNotAllowed = "method_not_allowed"
    /// Any other HTTP error the framework raised (its status, its reason).
    case httpError = "http_error"
    /// 413: the request body is over the limit; nothing was done.
    case bodyTooLarge = "body_too_large"
    /// 429: a per-client or per-tenant rate limit; `Retry-After` says when to retry.
    case rateLimited = "rate_limited"
    /// 503: the database cannot be reached (or the replica is not ready yet); nothing was done.
    case unavailable = "unavailable"
    /// 503: this replica is draining (SIGTERM); nothing was sent, another replica takes the retry.
    case shuttingDown = "shutting_down"
    /// 500: a bug; logged with the request id.
    case internalError = "internal_error"

    // MARK: Admin API and dashboard
    /// 401: the admin token is missing, unknown or revoked.
    case adminTokenInvalid = "admin_token_invalid"
    /// 401: `GET /metrics` without the metrics token.
    case metricsTokenInvalid = "metrics_token_invalid"
    /// 403: a dashboard form without its session's CSRF token.
    case csrfTokenInvalid = "csrf_token_invalid"
    /// 422: the tenant holds the most admin tokens, vault keys or dashboard sessions it may.
    case tenantLimitReached = "tenant_limit_reached"
    /// 409: the tenant holds the most webhook endpoints it may.
    case webhookEndpointLimitReached = "webhook_endpoint_limit_reached"
    /// 409: a revoked key's policy cannot change.
    case keyRevoked = "key_revoked"
    /// 403: the parent key already has the most live children it may.
    case childKeyLimitReached = "child_key_limit_reached"
    /// 403: child keys may not nest deeper.
    case childKeyDepthExceeded = "child_key_depth_exceeded"
    /// 403: an ancestor of the key is revoked or expired, so it cannot mint children.
    case parentKeyInactive = "parent_key_inactive"
    /// 409: the audit event's outcome was resolved already.
    case outcomeAlreadyResolved = "outcome_already_resolved"
    /// 409: only an event whose outcome is unknown can be resolved.
    case outcomeNotUnknown = "outcome_not_unknown"
    /// 429: the tenant has too many admin reads running or waiting.
    case tooManyReads = "too_many_reads"
    /// 503: an admin read ran past the statement timeout and was stopped.
    case queryTimeout = "query_timeout"

    // MARK: Proxy: the vault key
    /// 401: no vault key, not a vault key, or a token not proven for its key.
    case vaultKeyInvalid = "vault_key_invalid"
    /// 401: the vault key (or an ancestor) is revoked.
    case vaultKeyRevoked = "vault_key_revoked"
    /// 401: the vault key (or an ancestor) has expired.
    case vaultKeyExpired = "vault_key_expired"

    // MARK: Proxy: policy
    /// 403: the key is for another vendor.
    case vendorNotAllowed = "vendor_not_allowed"
    /// 403: the endpoint is not in the key's `allowed_endpoints` (or is one Keybrake does not proxy).
    case endpointNotAllowed = "endpoint_not_allowed"
    /// 403: a capped key asked for an endpoint that moves money Keybrake cannot price.
    case endpointNotPriced = "endpoint_not_priced"
    /// 403: the request names a Stripe account outside the key's `allowed_stripe_accounts`.
    case stripeAccountNotAllowed = "stripe_account_not_allowed"
    /// 403: the tenant has stored no credentials for this vendor.
    case vendorCredentialsMissing = "vendor_credentials_missing"
    /// 403: one request above the key's `max_request_usd` (from `kb_reserve`).
    case requestCapExceeded = "request_cap_exceeded"
    /// 429: the key's daily cap is reached; resets at the key's midnight (from `kb_reserve`).
    case dailyUSDCapExceeded = "daily_usd_cap_exceeded"
    /// 429: the key's monthly cap is reached (from `kb_reserve`).
    case monthlyUSDCapExceeded = "monthly_usd_cap_exceeded"
    /// 429: the key's lifetime cap is reached; it never resets (from `kb_reserve`).
    case totalUSDCapExceeded = "total_usd_cap_exceeded"
    /// 429: the free plan's proxied requests this month are used up.
    case monthlyQuotaExceeded = "monthly_quota_exceeded"
    /// 429: the tenant's share of this replica's seats is taken and its queue is full or waited too long.
    case tenantBusy = "tenant_busy"

    // MARK: Proxy: pricing and idempotency
    /// 400 (404 when the object looked up does not exist): the amount to reserve is missing from the request.
    case amountRequired = "amount_required"
    /// 400: a currency Keybrake has no rate for.
    case currencyNotSupported = "currency_not_supported"
    /// 400: an idempotency key reused with a different request.
    case idempotencyKeyReused = "idempotency_key_reused"
    /// 409: another request holds this idempotency key right now; retry.
    case idempotencyKeyInUse = "idempotency_key_in_use"
    /// 409: the same request (inside the duplicate window) is upstream right now; retry.
    case duplicateInFlight = "duplicate_in_flight"
    /// 409: an earlier attempt's outcome is unknown; resolve it or wait for its lease.
    case outcomeUnknown = "outcome_unknown"
    /// Audit rows only: a reservation that committed after its request was already answered 503 (nothing was
    /// forwarded), given back by a row of its own that resolves the 503's.
    case lateReservationReleased = "late_reservation_released"

    // MARK: Proxy: the vendor
    /// 502: the vendor's answer or connection failed; the outcome may be unknown.
    case upstreamError = "upstream_error"
    /// 502: the vendor could not be reached; nothing was sent.
    case upstreamUnreachable = "upstream_unreachable"
    /// 504: the vendor did not answer in time; the outcome is unknown.
    case upstreamTimeout = "upstream_timeout"
    /// 503: this replica's connections to the vendor are all busy; nothing was sent or reserved.
    case upstreamBusy = "upstream_busy"
}
