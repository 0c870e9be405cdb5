import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage
import TokenAuth

/// Today's and this month's spend of one key, in its own time zone (`LedgerKeySpendReader` reads it from the ledger).
public protocol KeySpendReader: Sendable {
    func spend(of key: VaultKey, now: Date, context: KeybrakeRequestContext) async throws -> KeySpend
}

public struct KeySpend: Sendable {
    public struct Period: Sendable {
        public var start: String
        public var settled: MicroUSD
        public var reserved: MicroUSD
        public var unknown: MicroUSD
        public var cap: MicroUSD?
        public init(start: String, settled: MicroUSD, reserved: MicroUSD, unknown: MicroUSD, cap: MicroUSD?) {
            self.start = start
            self.settled = settled
            self.reserved = reserved
            self.unknown = unknown
            self.cap = cap
        }
    }
    public var today: Period
    public var month: Period
    /// The key's whole life (the lifetime cap's period).
    public var total: Period
    public init(today: Period, month: Period, total: Period) {
        self.today = today
        self.month = month
        self.total = total
    }
}

/// Issue, list, show, edit and revoke vault keys. The token is returned once, at creation.
public struct KeysController: Sendable {
    let repository: any KeyRepository
    let verifier: TokenVerifier
    let clock: any KeybrakeCore.Clock
    let spendReader: (any KeySpendReader)?
    /// Waits for replicas to apply key changes (nil: nobody serves keys from memory).
    let acknowledgements: KeyChangeAcknowledgements?
    /// Each new key costs an argon2 hash (~27 ms of a core): creations are limited per tenant (shared with the dashboard).
    let creations: TenantActionLimiter
    /// PATCH and revoke: each is announced to every replica and acknowledged (shared with the dashboard).
    let changes: TenantActionLimiter

    public static let defaultPageSize = 50
    public static let maxPageSize = 100

    public init(repository: any KeyRepository, verifier: TokenVerifier, clock: any KeybrakeCore.Clock, spendReader: (any KeySpendReader)? = nil,
                creations: TenantActionLimiter = TenantActionLimiter(perMinutePerTenant: 60),
                changes: TenantActionLimiter = TenantActionLimiter(perMinutePerTenant: 600, action: "changing vault keys"),
                acknowledgements: KeyChangeAcknowledgements? = nil) {
        self.acknowledgements = acknowledgements
        self.creations = creations
        self.changes = changes
        self.repository = repository
        self.verifier = verifier
        self.clock = clock
        self.spendReader = spendReader
    }

    public func addAdminRoutes(to group: some RouterMethods<KeybrakeRequestContext>) {
        group.post("/keys") { request, context in try await self.create(request, context) }
        group.get("/keys") { request, context in try await self.list(request, context) }
        group.get("/keys/:id") { _, context in try await self.show(context) }
        group.patch("/keys/:id") { request, context in try await self.update(request, context) }
        group.post("/keys/:id/revoke") { _, context in try await self.revoke(context) }
        group.get("/keys/:id/children") { request, context in try await self.children(request, context) }
    }

    // MARK: - Request parsing

    static let policyFields: Set<String> = [
        "label", "allowed_endpoints", "daily_usd_cap", "monthly_usd_cap", "max_request_usd", "expires_at",
        "rate_limit_per_minute", "auto_idempotency", "duplicate_window_seconds", "timezone", "allowed_stripe_accounts",
        "total_usd_cap", "alert_thresholds",
    ]
    /// Caps are whole cents; a single request's maximum may be finer (an SMS costs $0.0083).
    static let capDecimals = 2
    static let maxRequestDecimals = 6

    public static func parseCreate(_ json: JSONObjectReader) throws(KeybrakeError) -> Policy {
        try json.rejectUnknown(allowed: policyFields.union(["vendor"]))
        let vendorName = try json.string("vendor", required: true, maxLength: 40) ?? ""
        guard let vendor = Vendor(rawValue: vendorName) else {
            throw .invalidRequest("vendor must be one of \(Vendor.names).", field: "vendor")
        }
        var policy = Policy(vendor: vendor, label: try json.string("label", required: true, maxLength: 1000) ?? "",
                            allowedEndpoints: try json.stringArray("allowed_endpoints", required: true) ?? [])
        try apply(json, to: &policy)
        return policy
    }

    /// Applies the fields present in `json` (null clears an optional limit).
    public static func apply(_ json: JSONObjectReader, to policy: inout Policy) throws(KeybrakeError) {
        if json.has("label") {
            guard let label = try json.string("label", maxLength: 1000) else { throw .invalidRequest("label cannot be null.", field: "label") }
            policy.label = label
        }
        if json.has("allowed_endpoints") {
            guard let endpoints = try json.stringArray("allowed_endpoints") else {
                throw .invalidRequest("allowed_endpoints cannot be null.", field: "allowed_endpoints")
            }
            policy.allowedEndpoints = endpoints
        }
        if json.has("daily_usd_cap") { policy.dailyCap = try json.usd("daily_usd_cap", maxDecimals: capDecimals) }
        if json.has("monthly_usd_cap") { policy.monthlyCap = try json.usd("monthly_usd_cap", maxDecimals: capDecimals) }
        if json.has("max_request_usd") { policy.maxRequest = try json.usd("max_request_usd", maxDecimals: maxRequestDecimals) }
        if json.has("total_usd_cap") { policy.totalCap = try json.usd("total_usd_cap", maxDecimals: capDecimals) }
        if json.has("expires_at") { policy.expiresAt = try json.timestamp("expires_at") }
        if json.has("rate_limit_per_minute") { policy.rateLimitPerMinute = try json.int("rate_limit_per_minute") }
        if json.has("auto_idempotency") {
            guard let v = try json.bool("auto_idempotency") else { throw .invalidRequest("auto_idempotency cannot be null.", field: "auto_idempotency") }
            policy.autoIdempotency = v
        }
        if json.has("duplicate_window_seconds") {
            guard let v = try json.int("duplicate_window_seconds") else {
                throw .invalidRequest("duplicate_window_seconds cannot be null (0 turns the guard off).", field: "duplicate_window_seconds")
            }
            policy.duplicateWindowSeconds = v
        }
        if json.has("timezone") {
            guard let tz = try json.string("timezone", maxLength: 64) else { throw .invalidRequest("timezone cannot be null.", field: "timezone") }
            policy.timezone = tz
        }
        if json.has("allowed_stripe_accounts") {
            policy.allowedStripeAccounts = try json.stringArray("allowed_stripe_accounts") ?? []
        }
        // null goes back to the default (50, 80, 100).
        if json.has("alert_thresholds") { policy.alertThresholds = try json.intArray("alert_thresholds", maxCount: Policy.maxAlertThresholds + 1) }
    }

    // MARK: - Response shapes

    struct KeyBody: Encodable {
        let id: String
        let label: String
        let vendor: String
        let status: String
        let allowedEndpoints: [String]
        @NullEncoded var dailyUsdCap: USDAmount?
        @NullEncoded var monthlyUsdCap: USDAmount?
        @NullEncoded var maxRequestUsd: USDAmount?
        @NullEncoded var totalUsdCap: USDAmount?
        /// true when the key has no USD limit at all.
        let uncapped: Bool
        @NullEncoded var expiresAt: Date?
        @NullEncoded var rateLimitPerMinute: Int?
        let autoIdempotency: Bool
        let duplicateWindowSeconds: Int
        let timezone: String
        let allowedStripeAccounts: [String]
        /// Percent of each cap at which a `key.spend.threshold_crossed` event fires.
        let alertThresholds: [Int]
        let createdAt: Date
        let updatedAt: Date
        @NullEncoded var revokedAt: Date?
        @NullEncoded var parentKeyId: String?
        /// The chain from the root key to the parent, root first (empty for a root key).
        let ancestorKeyIds: [String]
        @NullEncoded var runId: String?
    }

    func body(_ key: VaultKey) -> KeyBody {
        let p = key.policy
        return KeyBody(
            id: key.id, label: p.label, vendor: p.vendor.rawValue, status: key.effectiveStatus(now: clock.now()),
            allowedEndpoints: p.allowedEndpoints, dailyUsdCap: USDAmount(p.dailyCap), monthlyUsdCap: USDAmount(p.monthlyCap),
            maxRequestUsd: USDAmount(p.maxRequest), totalUsdCap: USDAmount(p.totalCap), uncapped: p.isUncapped, expiresAt: p.expiresAt,
            rateLimitPerMinute: p.rateLimitPerMinute, autoIdempotency: p.autoIdempotency,
            duplicateWindowSeconds: p.duplicateWindowSeconds, timezone: p.timezone,
            allowedStripeAccounts: p.allowedStripeAccounts, alertThresholds: p.alertThresholds ?? Policy.defaultAlertThresholds,
            createdAt: key.createdAt, updatedAt: key.updatedAt,
            revokedAt: key.revokedAt, parentKeyId: key.parentId, ancestorKeyIds: key.ancestorIds, runId: key.runId
        )
    }


    // MARK: - Handlers

    func create(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        try creations.admit(tenantId: admin.tenantId)
        var policy = try Self.parseCreate(try await JSONObjectReader.decode(request, context: context))
        policy.label = policy.label.trimmingCharacters(in: .whitespaces)
        try policy.validate(now: clock.now())
        let (token, publicId) = TokenFormat.generate(.vault)
        let hash = try await verifier.hashForStorage(token, tenant: admin.tenantId)
        let key = try await db(context) {
            try await repository.create(id: "key_" + publicId, tenantId: admin.tenantId, tokenHash: hash, policy: policy, logger: context.logger)
        }
        struct Created: Encodable { let key: KeyBody; let token: String }
        return try JSONResponse.make(.created, Created(key: body(key), token: token))
    }

    func list(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let (limit, after) = try Self.page(request, cursorKind: "k1")
        // One extra row tells whether another page exists.
        guard let keys = try await db(context, {
            try await repository.list(tenantId: admin.tenantId, after: after, limit: limit + 1, logger: context.logger)
        }) else {
            throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor")
        }
        let page = Array(keys.prefix(limit))
        struct Page: Encodable { let data: [KeyBody]; @NullEncoded var nextCursor: String? }
        return try JSONResponse.make(.ok, Page(
            data: page.map(body), nextCursor: keys.count > limit ? page.last.map { PageCursor.encode($0.id, kind: "k1") } : nil
        ))
    }

    func show(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        guard let key = try await db(context, { try await repository.key(id: id, tenantId: admin.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("key")
        }
        let summary = try await db(context) { try await repository.childSummary(of: id, tenantId: admin.tenantId, logger: context.logger) }
        struct ChildrenBody: Encodable {
            let count: Int
            let active: Int
            /// Settled, held and unknown spend of the key's children over their lives (it is also in this key's spend).
            let countedUsd: USDAmount
        }
        let children = ChildrenBody(count: summary.count, active: summary.active, countedUsd: USDAmount(summary.counted))
        guard let spendReader else {
            struct Shown: Encodable { let key: KeyBody; let children: ChildrenBody }
            return try JSONResponse.make(.ok, Shown(key: body(key), children: children))
        }
        let spend = try await db(context) { try await spendReader.spend(of: key, now: clock.now(), context: context) }
        struct PeriodBody: Encodable {
            let start: String
            let settledUsd: USDAmount
            let reservedUsd: USDAmount
            let outcomeUnknownUsd: USDAmount
            @NullEncoded var capUsd: USDAmount?
            @NullEncoded var remainingUsd: USDAmount?
            init(_ p: KeySpend.Period) {
                start = p.start
                settledUsd = USDAmount(p.settled)
                reservedUsd = USDAmount(p.reserved)
                outcomeUnknownUsd = USDAmount(p.unknown)
                capUsd = USDAmount(p.cap)
                remainingUsd = p.cap.map { USDAmount(max(.zero, $0 - p.settled - p.reserved - p.unknown)) }
            }
        }
        struct SpendBody: Encodable { let today: PeriodBody; let month: PeriodBody; let total: PeriodBody }
        struct Shown: Encodable { let key: KeyBody; let spend: SpendBody; let children: ChildrenBody }
        return try JSONResponse.make(.ok, Shown(key: body(key), spend: SpendBody(
            today: PeriodBody(spend.today), month: PeriodBody(spend.month), total: PeriodBody(spend.total)), children: children))
    }

    func update(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        try changes.admit(tenantId: admin.tenantId)
        let id = context.parameters.get("id") ?? ""
        let json = try await JSONObjectReader.decode(request, context: context)
        if json.has("vendor") {
            throw KeybrakeError.invalidRequest("vendor cannot be changed; issue a new key for another vendor.", field: "vendor")
        }
        try json.rejectUnknown(allowed: Self.policyFields)
        let now = clock.now()
        let updated: (key: VaultKey, change: Int64)?
        // A child stays inside its parent, and keys of one chain share a time zone (their day is one day).
        var parent: VaultKey?
        var hasChildren = false
        if let current = try await db(context, { try await repository.key(id: id, tenantId: admin.tenantId, logger: context.logger) }) {
            if let parentId = current.parentId {
                parent = try await db(context) { try await repository.key(id: parentId, tenantId: admin.tenantId, logger: context.logger) }
            }
            if json.has("timezone") {
                hasChildren = try await db(context) { try await repository.childSummary(of: id, tenantId: admin.tenantId, logger: context.logger).count > 0 }
            }
        }
        let parentPolicy = parent?.policy, keepTimezone = hasChildren
        do {
            updated = try await repository.update(id: id, tenantId: admin.tenantId, logger: context.logger) { current in
                guard current.status == .active else {
                    throw KeybrakeError(status: 409, code: .keyRevoked, message: "This key is revoked; its policy can no longer change.")
                }
                var policy = current.policy
                try Self.apply(json, to: &policy)
                policy.label = policy.label.trimmingCharacters(in: .whitespaces)
                if keepTimezone, policy.timezone != current.policy.timezone {
                    throw KeybrakeError.invalidRequest("timezone cannot change on a key with child keys: a child counts its days in its parent's time zone.", field: "timezone")
                }
                // Only an expiry sent in this request must be in the future.
                try policy.validate(now: json.has("expires_at") ? now : nil)
                if let parentPolicy { try ChildKeyRules.check(policy, within: parentPolicy) }
                return policy
            }
        } catch {
            throw DatabaseErrors.map(error, logger: context.logger)
        }
        guard let updated else { throw KeybrakeError.notFound("key") }
        return try await acknowledged(updated, context)
    }

    func revoke(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        try changes.admit(tenantId: admin.tenantId)
        let id = context.parameters.get("id") ?? ""
        guard let revoked = try await db(context, { try await repository.revoke(id: id, tenantId: admin.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("key")
        }
        return try await acknowledged(revoked, context)
    }

    /// Answers a key change once every live replica has applied it (or lost its lease), saying how many did.
    func acknowledged(_ changed: (key: VaultKey, change: Int64), _ context: KeybrakeRequestContext) async throws -> Response {
        struct Replicas: Encodable {
            /// Replicas serving keys from memory that applied the change before this answer.
            let acknowledged: Int
            /// Replicas that had not, after waiting one lease (0 unless a replica's clock or Postgres misbehaves).
            let pending: Int
        }
        struct Changed: Encodable { let key: KeyBody; let replicas: Replicas }
        let result = try await db(context) {
            try await acknowledgements?.wait(for: changed.change, logger: context.logger) ?? .init(acknowledged: 0, pending: 0)
        }
        if result.pending > 0 {
            context.logger.error("key change not acknowledged by every live replica", metadata: ["key_id": "\(changed.key.id)", "pending": "\(result.pending)"])
        }
        return try JSONResponse.make(.ok, Changed(key: body(changed.key), replicas: Replicas(acknowledged: result.acknowledged, pending: result.pending)))
    }

    func children(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        let (limit, after) = try Self.page(request, cursorKind: "c1")
        guard try await db(context, { try await repository.key(id: id, tenantId: admin.tenantId, logger: context.logger) }) != nil else {
            throw KeybrakeError.notFound("key")
        }
        guard let rows = try await db(context, {
            try await repository.children(of: id, tenantId: admin.tenantId, after: after, limit: limit + 1, logger: context.logger)
        }) else {
            throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor")
        }
        let page = Array(rows.prefix(limit))
        struct Child: Encodable {
            let key: KeyBody
            /// Settled, held and unknown over the child's life (its subtree's included).
            let countedUsd: USDAmount
            @NullEncoded var remainingUsd: USDAmount?
        }
        struct Page: Encodable { let data: [Child]; @NullEncoded var nextCursor: String? }
        return try JSONResponse.make(.ok, Page(
            data: page.map { key, counted in
                Child(key: body(key), countedUsd: USDAmount(counted), remainingUsd: key.policy.totalCap.map { USDAmount(max(.zero, $0 - counted)) })
            },
            nextCursor: rows.count > limit ? page.last.map { PageCursor.encode($0.0.id, kind: "c1") } : nil
        ))
    }

    /// `limit` and the key id a `cursor` of this kind points after, from the query string.
    static func page(_ request: Request, cursorKind: String) throws(KeybrakeError) -> (limit: Int, after: String?) {
        let query = request.uri.queryParameters
        var limit = defaultPageSize
        if let raw = query["limit"] {
            guard let n = Int(String(raw)), (1...maxPageSize).contains(n) else {
                throw .invalidRequest("limit must be a whole number from 1 to \(maxPageSize).", field: "limit")
            }
            limit = n
        }
        guard let raw = query["cursor"], !raw.isEmpty else { return (limit, nil) }
        guard let id = PageCursor.decode(String(raw), kind: cursorKind, idPrefix: "key_") else {
            throw .invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor")
        }
        return (limit, id)
    }
}
