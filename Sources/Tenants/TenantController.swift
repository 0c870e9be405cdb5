import Crypto
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage
import TokenAuth

public struct TenantsConfiguration: Sendable {
    public var freeMonthlyRequests: Int
    /// Platform operator's token for plan changes; nil disables the operator routes.
    public var operatorToken: String?
    public var signupsPerMinutePerClient: Int
    /// Each admin token costs an argon2 hash: creations are limited per tenant.
    public var adminTokensPerMinutePerTenant: Int = 20
    /// Active admin tokens a tenant may hold at once (each is a door into the tenant).
    public var maxAdminTokensPerTenant: Int = 100
    /// Live dashboard sessions a tenant may hold (`KEYBRAKE_MAX_SESSIONS_PER_TENANT`).
    public var maxSessionsPerTenant: Int = 100
    /// The deployment's own proxies: only their `X-Forwarded-For` / `Forwarded` name the client a signup counts for.
    public var trustedProxies: TrustedProxies = .none

    public init(freeMonthlyRequests: Int = 1000, operatorToken: String? = nil, signupsPerMinutePerClient: Int = 10) {
        self.freeMonthlyRequests = freeMonthlyRequests
        self.operatorToken = operatorToken
        self.signupsPerMinutePerClient = signupsPerMinutePerClient
    }

    public func monthlyQuota(for plan: Plan) -> Int? { plan == .free ? freeMonthlyRequests : nil }
}

/// Signup, the tenant's own profile and usage, admin tokens, operator plan changes.
public struct TenantController: Sendable {
    let repository: any TenantRepository
    let verifier: TokenVerifier
    let configuration: TenantsConfiguration
    let signupLimiter: WindowRateLimiter
    let adminTokenLimiter: WindowRateLimiter
    let clock: any KeybrakeCore.Clock

    public init(repository: any TenantRepository, verifier: TokenVerifier, configuration: TenantsConfiguration, clock: any KeybrakeCore.Clock) {
        self.repository = repository
        self.verifier = verifier
        self.configuration = configuration
        self.signupLimiter = WindowRateLimiter(limit: configuration.signupsPerMinutePerClient, window: .seconds(60))
        self.adminTokenLimiter = WindowRateLimiter(limit: configuration.adminTokensPerMinutePerTenant, window: .seconds(60))
        self.clock = clock
    }

    /// Routes that need no admin token.
    public func addPublicRoutes(to router: some RouterMethods<KeybrakeRequestContext>) {
        router.post("/v1/tenants") { request, context in try await self.signup(request, context) }
        router.post("/v1/operator/tenants/:id/plan") { request, context in try await self.setPlan(request, context) }
    }

    /// Routes behind `AdminAuthMiddleware`.
    public func addAdminRoutes(to group: some RouterMethods<KeybrakeRequestContext>) {
        group.get("/tenant") { _, context in try await self.show(context) }
        group.post("/admin-tokens") { request, context in try await self.createAdminToken(request, context) }
        group.delete("/admin-tokens/:id") { _, context in try await self.deleteAdminToken(context) }
        group.get("/admin-tokens") { _, context in try await self.listAdminTokens(context) }
        group.post("/admin-tokens/revoke-others") { _, context in try await self.revokeOtherAdminTokens(context) }
    }

    // MARK: - Shapes

    struct TenantBody: Encodable {
        let id: String
        let name: String
        let email: String
        let plan: String
        @NullEncoded var monthlyQuota: Int?
        let createdAt: Date
    }

    struct UsageBody: Encodable {
        let month: String
        let requests: Int64
        @NullEncoded var quota: Int?
        @NullEncoded var remaining: Int64?
    }

    struct AdminTokenBody: Encodable {
        let id: String
        @NullEncoded var label: String?
        let createdAt: Date
    }

    /// A token as listed: never its secret or hash; whether it is the one making this request.
    struct ListedAdminTokenBody: Encodable {
        let id: String
        @NullEncoded var label: String?
        let createdAt: Date
        @NullEncoded var lastUsedAt: Date?
        let current: Bool
    }

    func body(_ tenant: Tenant) -> TenantBody {
        TenantBody(id: tenant.id, name: tenant.name, email: tenant.email, plan: tenant.plan.rawValue,
                   monthlyQuota: configuration.monthlyQuota(for: tenant.plan), createdAt: tenant.createdAt)
    }

    // MARK: - Handlers

    func signup(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let client = configuration.trustedProxies.clientKey(peer: context.remoteAddress?.ipAddress, headers: request.headers)
        if let retry = signupLimiter.hit(client) {
            throw KeybrakeError.rateLimited("Too many signups from this address; try again in \(retry) s.", retryAfter: retry)
        }
        let json = try await JSONObjectReader.decode(request, context: context)
        try json.rejectUnknown(allowed: ["name", "email"])
        let name = (try json.displayText("name", required: true, maxLength: 200) ?? "").trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty else { throw KeybrakeError.invalidRequest("name must not be empty.", field: "name") }
        let email = (try json.string("email", required: true, maxLength: 254) ?? "").trimmingCharacters(in: .whitespaces)
        guard Self.looksLikeEmail(email) else {
            throw KeybrakeError.invalidRequest("email must be an address like ops@example.com.", field: "email")
        }
        let (token, publicId) = TokenFormat.generate(.admin)
        // No tenant yet: the signup's hash is paid from its client address's share.
        let hash = try await verifier.hashForStorage(token, tenant: "signup " + client)
        let tenant = try await db(context) {
            try await repository.createTenant(name: name, email: email, adminTokenId: "atk_" + publicId, adminTokenHash: hash, logger: context.logger)
        }
        struct Created: Encodable { let tenant: TenantBody; let adminToken: String; let adminTokenId: String }
        return try JSONResponse.make(.created, Created(tenant: body(tenant), adminToken: token, adminTokenId: "atk_" + publicId))
    }

    func show(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let month = Self.utcMonth(clock.now())
        let (tenant, requests) = try await db(context) {
            (try await repository.tenant(id: admin.tenantId, logger: context.logger),
             try await repository.monthlyRequests(tenantId: admin.tenantId, month: month, logger: context.logger))
        }
        guard let tenant else { throw KeybrakeError.adminTokenInvalid }
        let quota = configuration.monthlyQuota(for: tenant.plan)
        struct Shown: Encodable { let tenant: TenantBody; let usage: UsageBody }
        return try JSONResponse.make(.ok, Shown(
            tenant: body(tenant),
            usage: UsageBody(month: String(month.prefix(7)), requests: requests, quota: quota,
                             remaining: quota.map { max(0, Int64($0) - requests) })
        ))
    }

    func createAdminToken(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        if let retry = adminTokenLimiter.hit(admin.tenantId) {
            throw KeybrakeError.rateLimited("This tenant is creating admin tokens too fast; retry in \(retry) s.", retryAfter: retry)
        }
        var label: String?
        if request.headers[.contentLength] != "0", request.headers[.contentType] != nil || request.headers[.contentLength] != nil {
            let json = try await JSONObjectReader.decode(request, context: context)
            try json.rejectUnknown(allowed: ["label"])
            label = try json.displayText("label", maxLength: 100)
        }
        let active = try await db(context) { try await repository.adminTokens(tenantId: admin.tenantId, logger: context.logger).count }
        guard active < configuration.maxAdminTokensPerTenant else {
            throw KeybrakeError(status: 422, code: .tenantLimitReached,
                message: "This tenant holds \(active) active admin tokens, the most it may (\(configuration.maxAdminTokensPerTenant)). Revoke unused ones (GET /v1/admin-tokens lists them) first.")
        }
        let (token, publicId) = TokenFormat.generate(.admin)
        let hash = try await verifier.hashForStorage(token, tenant: admin.tenantId)
        let record = try await db(context) {
            try await repository.addAdminToken(tenantId: admin.tenantId, id: "atk_" + publicId, hash: hash, label: label, logger: context.logger)
        }
        struct Created: Encodable { let adminToken: AdminTokenBody; let token: String }
        return try JSONResponse.make(.created, Created(
            adminToken: AdminTokenBody(id: record.id, label: record.label, createdAt: record.createdAt), token: token
        ))
    }

    /// The tenant's active admin tokens (bounded by `maxAdminTokensPerTenant`, so one page).
    func listAdminTokens(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let tokens = try await db(context) { try await repository.adminTokens(tenantId: admin.tenantId, logger: context.logger) }
        struct Listed: Encodable { let data: [ListedAdminTokenBody]; @NullEncoded var nextCursor: String? }
        return try JSONResponse.make(.ok, Listed(data: tokens.map {
            ListedAdminTokenBody(id: $0.id, label: $0.label, createdAt: $0.createdAt, lastUsedAt: $0.lastUsedAt, current: $0.id == admin.tokenId)
        }, nextCursor: nil))
    }

    /// Revokes every admin token of the tenant but the one making the request: after a leak, tokens minted with the
    /// leaked one do not outlive it. Dashboard sessions of revoked tokens end with them (sessions join their token).
    func revokeOtherAdminTokens(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let revoked = try await db(context) {
            try await repository.revokeAdminTokens(tenantId: admin.tenantId, except: admin.tokenId, logger: context.logger)
        }
        for id in revoked where id.hasPrefix("atk_") { verifier.forget(publicId: String(id.dropFirst(4))) }
        struct Revoked: Encodable { let revoked: [String] }
        return try JSONResponse.make(.ok, Revoked(revoked: revoked))
    }

    func deleteAdminToken(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        let revoked = try await db(context) { try await repository.revokeAdminToken(tenantId: admin.tenantId, id: id, logger: context.logger) }
        guard revoked else { throw KeybrakeError.notFound("admin token") }
        if id.hasPrefix("atk_") { verifier.forget(publicId: String(id.dropFirst(4))) }
        return Response(status: .noContent)
    }

    func setPlan(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        guard let expected = configuration.operatorToken, !expected.isEmpty,
              let presented = BearerToken.from(request.headers),
              SHA256.hash(data: Data(presented.utf8)) == SHA256.hash(data: Data(expected.utf8))  // constant-time digest compare
        else {
            throw KeybrakeError(status: 401, code: .adminTokenInvalid,
                                message: "Operator routes need `Authorization: Bearer <KEYBRAKE_OPERATOR_TOKEN>`.")
        }
        let json = try await JSONObjectReader.decode(request, context: context)
        try json.rejectUnknown(allowed: ["plan"])
        let planName = try json.string("plan", required: true, maxLength: 20) ?? ""
        guard let plan = Plan(rawValue: planName) else {
            throw KeybrakeError.invalidRequest("plan must be one of: \(Plan.allCases.map(\.rawValue).joined(separator: ", ")).", field: "plan")
        }
        let id = context.parameters.get("id") ?? ""
        guard let tenant = try await db(context, { try await repository.setPlan(tenantId: id, plan: plan, logger: context.logger) }) else {
            throw KeybrakeError.notFound("tenant")
        }
        struct Changed: Encodable { let tenant: TenantBody }
        return try JSONResponse.make(.ok, Changed(tenant: body(tenant)))
    }

    // MARK: - Helpers


    static func looksLikeEmail(_ s: String) -> Bool {
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix(".") else { return false }
        return !s.contains(where: { $0.isWhitespace || $0.isNewline })
    }

    /// First day of the UTC month, `YYYY-MM-01`.
    public static func utcMonth(_ date: Date) -> String { KeyCalendar.periods(now: date, timezone: "UTC").utcMonth }
}
