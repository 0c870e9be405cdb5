import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage
import TokenAuth

/// `POST /v1/child-keys` (DESIGN §9): a vault key mints a narrower, expiring child for one run — authenticated by
/// the parent's own vault token, so a flow runner never holds an admin token.
public struct ChildKeysController: Sendable {
    let keys: KeysController
    let authenticator: VaultKeyAuthenticator
    let limits: ChildLimits
    /// Each child costs an argon2 hash (~27 ms of a core), like any key: mints are limited per tenant.
    let mints: WindowRateLimiter
    /// Whose `X-Forwarded-For` names the client that failed-attempt limits count.
    let trustedProxies: TrustedProxies
    /// Attempts with a parent key's id but an unproven token: summed up for the key's tenant (DESIGN §4), not audited
    /// one by one (the server wires this to the audit module's summary).
    let recordUnverified: @Sendable (VaultKey) -> Void

    public init(keys: KeysController, authenticator: VaultKeyAuthenticator, limits: ChildLimits = ChildLimits(), mintsPerMinutePerTenant: Int = 600,
                trustedProxies: TrustedProxies = .none, recordUnverified: @escaping @Sendable (VaultKey) -> Void = { _ in }) {
        self.trustedProxies = trustedProxies
        self.recordUnverified = recordUnverified
        self.keys = keys
        self.authenticator = authenticator
        self.limits = limits
        self.mints = WindowRateLimiter(limit: mintsPerMinutePerTenant, window: .seconds(60))
    }

    public func addRoutes(to router: some RouterMethods<KeybrakeRequestContext>) {
        router.post("/v1/child-keys") { request, context in try await self.mint(request, context) }
    }

    static let fields: Set<String> = [
        "label", "run_id", "allowed_endpoints", "total_usd_cap", "daily_usd_cap", "monthly_usd_cap", "max_request_usd",
        "expires_in_seconds", "duplicate_window_seconds", "allowed_stripe_accounts",
    ]

    /// What the request asks for, before it meets the parent.
    struct Ask: Sendable {
        var label: String
        var runId: String?
        var endpoints: [String]?
        var totalCap: MicroUSD?
        var dailyCap: MicroUSD?
        var monthlyCap: MicroUSD?
        var maxRequest: MicroUSD?
        var lifetimeSeconds: Int?
        var duplicateWindowSeconds: Int?
        var stripeAccounts: [String]?
    }

    static func parse(_ json: JSONObjectReader) throws(KeybrakeError) -> Ask {
        try json.rejectUnknown(allowed: fields)
        var ask = Ask(label: (try json.displayText("label", required: true, maxLength: 1000) ?? "").trimmingCharacters(in: .whitespaces))
        if let run = try json.displayText("run_id", maxLength: 10_000) {
            guard (1...ChildKeyRules.maxRunIdLength).contains(run.count) else {
                throw .invalidRequest("run_id must be 1–\(ChildKeyRules.maxRunIdLength) printable characters.", field: "run_id")
            }
            ask.runId = run
        }
        ask.endpoints = try json.stringArray("allowed_endpoints")
        ask.totalCap = try json.usd("total_usd_cap", maxDecimals: KeysController.capDecimals)
        ask.dailyCap = try json.usd("daily_usd_cap", maxDecimals: KeysController.capDecimals)
        ask.monthlyCap = try json.usd("monthly_usd_cap", maxDecimals: KeysController.capDecimals)
        ask.maxRequest = try json.usd("max_request_usd", maxDecimals: KeysController.maxRequestDecimals)
        if let seconds = try json.int("expires_in_seconds") {
            guard (1...ChildKeyRules.maxLifetimeSeconds).contains(seconds) else {
                throw .invalidRequest("expires_in_seconds must be from 1 to \(ChildKeyRules.maxLifetimeSeconds).", field: "expires_in_seconds")
            }
            ask.lifetimeSeconds = seconds
        }
        ask.duplicateWindowSeconds = try json.int("duplicate_window_seconds")
        ask.stripeAccounts = try json.stringArray("allowed_stripe_accounts")
        return ask
    }

    /// The child's policy: the parent's, narrowed by what was asked. Limits not asked for stay the ancestors' (they
    /// apply to every request of the child anyway).
    static func policy(_ ask: Ask, parent: Policy, now: Date) throws(KeybrakeError) -> Policy {
        var child = parent
        child.label = ask.label
        child.allowedEndpoints = ask.endpoints ?? parent.allowedEndpoints
        child.totalCap = ask.totalCap
        child.dailyCap = ask.dailyCap
        child.monthlyCap = ask.monthlyCap
        child.maxRequest = ask.maxRequest
        child.duplicateWindowSeconds = ask.duplicateWindowSeconds ?? parent.duplicateWindowSeconds
        child.allowedStripeAccounts = ask.stripeAccounts ?? parent.allowedStripeAccounts
        if let seconds = ask.lifetimeSeconds {
            child.expiresAt = now.addingTimeInterval(TimeInterval(seconds))
        } else {
            // The default hour, or less if the parent expires sooner: the default never widens the parent.
            let hour = now.addingTimeInterval(TimeInterval(ChildKeyRules.defaultLifetimeSeconds))
            child.expiresAt = parent.expiresAt.map { min($0, hour) } ?? hour
        }
        try child.validate(now: now)
        try ChildKeyRules.check(child, within: parent)
        return child
    }

    func mint(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        guard let token = VaultToken.from(request.headers) else { throw VaultKeyAuthenticator.invalidError }
        let now = keys.clock.now()
        let parent: VaultKey
        let client = RequestClient(request, context, proxies: trustedProxies)
        switch try await db(context, { try await authenticator.authenticate(token: token, client: client, now: now, logger: context.logger) }) {
        case .success(let key): parent = key
        case .failure(.invalid): throw VaultKeyAuthenticator.invalidError
        case .failure(.unverified(let key, let error)):
            recordUnverified(key)
            throw error
        case .failure(.denied(_, let error)): throw error
        }
        if let retry = mints.hit(parent.tenantId) {
            throw KeybrakeError.rateLimited("This tenant is minting child keys too fast; retry in \(retry) s.", retryAfter: retry)
        }
        let ask = try Self.parse(try await JSONObjectReader.decode(request, context: context))
        // Checked here for a clear answer before hashing; checked again under the parent's row lock.
        _ = try Self.policy(ask, parent: parent.policy, now: now)
        let (childToken, publicId) = TokenFormat.generate(.vault)
        let hash = try await keys.verifier.hashForStorage(childToken, tenant: parent.tenantId)
        let child: VaultKey
        do {
            child = try await keys.repository.createChild(
                id: "key_" + publicId, parentId: parent.id, tenantId: parent.tenantId, tokenHash: hash, runId: ask.runId,
                limits: limits, logger: context.logger
            ) { locked in
                guard locked.effectiveStatus(now: now) == "active" else {
                    throw KeybrakeError(status: 401, code: locked.status == .revoked ? ErrorCode.vaultKeyRevoked : .vaultKeyExpired,
                        message: "This vault key (\(locked.id)) is \(locked.effectiveStatus(now: now)); it cannot mint child keys.")
                }
                return try Self.policy(ask, parent: locked.policy, now: now)
            }
        } catch {
            throw DatabaseErrors.map(error, logger: context.logger)
        }
        struct Created: Encodable { let key: KeysController.KeyBody; let token: String }
        return try JSONResponse.make(.created, Created(key: keys.body(child), token: childToken))
    }
}
