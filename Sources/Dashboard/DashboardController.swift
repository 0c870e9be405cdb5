import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Keys
import Logging
import Mustache
import NIOConcurrencyHelpers
import PostgresNIO
import Storage
import Tenants
import TokenAuth
import Audit
import Vault

/// Server-rendered pages under /dashboard: overview (spend per key and label, monthly usage), keys (issue, edit caps,
/// revoke), audit (filters, detail, resolving unknown outcomes) and vendor credentials.
///
/// Sign-in exchanges an admin token for a session cookie (`kb_session`: HttpOnly, SameSite=Strict, Path=/dashboard,
/// Secure when the request arrived over TLS or with `X-Forwarded-Proto: https` / `Forwarded: proto=https` from the
/// TLS-terminating proxy). The session row is read from Postgres on every request, so sign-out, expiry and revoking
/// the admin token that opened it end it at once on every replica. Every state-changing form carries the session's
/// CSRF token; the sign-in form carries a double-submit token bound to a short-lived cookie.
public struct DashboardController: Sendable {
    let sessions: SessionStore
    let authenticator: any AdminAuthenticator
    let tenants: any TenantRepository
    let tenantsConfiguration: TenantsConfiguration
    let keys: any KeyRepository
    let verifier: TokenVerifier
    let credentials: CredentialStore
    let audit: AuditRepository
    let spend: SpendRepository
    let keySpend: any KeySpendReader
    let clock: any KeybrakeCore.Clock
    let renderer: Renderer

    static let sessionCookie = "kb_session"
    static let loginCookie = "kb_login"
    static let keysPageSize = 50
    static let auditPageSize = 50
    /// Rows of the overview's per-key table; the rest are counted and linked.
    static let overviewMaxRows = 100
    /// Keys offered in the audit filter's key list.
    static let filterMaxKeys = 200

    public init(
        postgres: PostgresClient, authenticator: any AdminAuthenticator, tenants: any TenantRepository,
        tenantsConfiguration: TenantsConfiguration, keys: any KeyRepository, verifier: TokenVerifier,
        credentials: CredentialStore, audit: AuditRepository, spend: SpendRepository, keySpend: any KeySpendReader,
        clock: any KeybrakeCore.Clock
    ) {
        self.sessions = SessionStore(client: postgres)
        self.authenticator = authenticator
        self.tenants = tenants
        self.tenantsConfiguration = tenantsConfiguration
        self.keys = keys
        self.verifier = verifier
        self.credentials = credentials
        self.audit = audit
        self.spend = spend
        self.keySpend = keySpend
        self.clock = clock
        // The templates are constants compiled into the binary; a parse error is a programming error.
        self.renderer = Renderer(library: try! Templates.library())
    }

    public func addRoutes(to router: Router<KeybrakeRequestContext>) {
        let group = router.group("/dashboard").add(middleware: DashboardMiddleware(renderer: renderer))
        group.get("") { request, context in try await self.overview(request, context) }
        group.get("/login") { request, context in try await self.loginPage(request, context) }
        group.post("/login") { request, context in try await self.login(request, context) }
        group.post("/logout") { request, context in try await self.logout(request, context) }
        group.get("/keys") { request, context in try await self.keysPage(request, context) }
        group.get("/keys/new") { request, context in try await self.newKeyPage(request, context) }
        group.post("/keys") { request, context in try await self.createKey(request, context) }
        group.get("/keys/:id") { request, context in try await self.keyPage(request, context) }
        group.post("/keys/:id/caps") { request, context in try await self.saveCaps(request, context) }
        group.get("/keys/:id/revoke") { request, context in try await self.revokePage(request, context) }
        group.post("/keys/:id/revoke") { request, context in try await self.revoke(request, context) }
        group.get("/audit") { request, context in try await self.auditPage(request, context) }
        group.get("/audit/:id") { request, context in try await self.auditEventPage(request, context) }
        group.post("/audit/:id/resolve") { request, context in try await self.resolve(request, context) }
        group.get("/vendors") { request, context in try await self.vendorsPage(request, context) }
        group.post("/vendors/:vendor") { request, context in try await self.saveCredentials(request, context) }
        group.get("/vendors/:vendor/delete") { request, context in try await self.deleteCredentialsPage(request, context) }
        group.post("/vendors/:vendor/delete") { request, context in try await self.deleteCredentials(request, context) }
        group.get("/assets/dashboard.css") { _, _ in Self.asset(Assets.css, type: "text/css; charset=utf-8") }
        group.get("/assets/dashboard.js") { _, _ in Self.asset(Assets.js, type: "text/javascript; charset=utf-8") }
    }

    static func asset(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: "public, max-age=300"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: - Sessions

    /// True when the browser reached us over TLS: directly, or through a proxy that says so.
    static func isSecure(_ request: Request) -> Bool {
        if request.head.scheme?.lowercased() == "https" { return true }
        if let proto = request.headers[.xForwardedProto]?.split(separator: ",").first,
           proto.trimmingCharacters(in: .whitespaces).lowercased() == "https" { return true }
        if let forwarded = request.headers[.forwarded]?.lowercased().split(separator: ",").first,
           forwarded.split(separator: ";").contains(where: { $0.trimmingCharacters(in: .whitespaces) == "proto=https" }) { return true }
        return false
    }

    static func cookie(_ name: String, _ value: String, path: String, maxAge: Int, request: Request) -> Cookie {
        Cookie(name: name, value: value, maxAge: maxAge, path: path, secure: isSecure(request), httpOnly: true, sameSite: .strict)
    }

    /// The signed-in session, or a redirect to the sign-in page.
    func session(_ request: Request, _ context: KeybrakeRequestContext) async throws -> DashboardSession {
        guard let cookie = request.cookies[Self.sessionCookie]?.value,
              let session = try await db(context, { try await sessions.session(cookie: cookie, logger: context.logger) }) else {
            throw SignInRequired()
        }
        return session
    }

    /// The page chrome (tenant name, CSRF token for the sign-out form).
    func chrome(_ session: DashboardSession, _ tab: Tab) -> Chrome {
        var chrome = Chrome(tenantName: session.tenantName, csrf: session.csrfToken)
        switch tab {
        case .overview: chrome.navOverview = true
        case .keys: chrome.navKeys = true
        case .audit: chrome.navAudit = true
        case .vendors: chrome.navVendors = true
        }
        return chrome
    }

    enum Tab { case overview, keys, audit, vendors }

    /// A state-changing form: signed in, and carrying this session's CSRF token.
    func verifiedForm(_ request: Request, _ context: KeybrakeRequestContext) async throws -> (DashboardSession, FormBody) {
        let session = try await session(request, context)
        let form = try await FormBody.read(request, context: context)
        guard let token = form["csrf"], constantTimeEquals(token, session.csrfToken) else { throw Self.csrfError }
        return (session, form)
    }

    static let csrfError = KeybrakeError(
        status: 403, code: "csrf_token_invalid",
        message: "This form did not come from your current dashboard session. Go back, reload the page and submit it again."
    )

    func notice(_ request: Request) -> Flash? {
        request.uri.queryParameters["notice"].flatMap { Flash.notices[String($0)] }.map(Flash.notice)
    }

    // MARK: - Sign in and out

    func loginPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        if let cookie = request.cookies[Self.sessionCookie]?.value,
           try await db(context, { try await sessions.session(cookie: cookie, logger: context.logger) }) != nil {
            return Page.redirect("/dashboard")
        }
        return renderLogin(request, flash: notice(request), status: .ok)
    }

    func renderLogin(_ request: Request, flash: Flash?, status: HTTPResponse.Status) -> Response {
        let loginToken = SessionStore.randomToken()
        var response = renderer.render("login", LoginView(flash: flash, loginCsrf: loginToken), status: status)
        response.setCookie(Self.cookie(Self.loginCookie, loginToken, path: "/dashboard/login", maxAge: 3600, request: request))
        return response
    }

    func login(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let form = try await FormBody.read(request, context: context)
        // Double-submit token: a page on another site cannot read our cookie to copy it into its form.
        guard let cookie = request.cookies[Self.loginCookie]?.value, let field = form["login_csrf"], constantTimeEquals(cookie, field) else {
            return renderLogin(request, flash: .error("The sign-in form expired or your browser blocked its cookie. Allow cookies for this site and try again."),
                               status: .forbidden)
        }
        guard let token = form.nonEmpty("token") else {
            return renderLogin(request, flash: .error("Paste an admin token (kb_admin_…)."), status: .badRequest)
        }
        let identity: AdminIdentity
        switch await authenticate(token, context) {
        case .success(let id):
            identity = id
        case .failure(let error) where error.status == 401:
            return renderLogin(request, flash: .error("That admin token is not valid, or it was revoked."), status: .unauthorized)
        case .failure(let error) where error.status == 429:
            return renderLogin(request, flash: .error(error.message), status: .tooManyRequests)
        case .failure(let error):
            throw error
        }
        let sessionId = try await db(context) {
            try await sessions.create(tenantId: identity.tenantId, adminTokenId: identity.tokenId, logger: context.logger)
        }
        var response = Page.redirect("/dashboard")
        response.setCookie(Self.cookie(Self.sessionCookie, sessionId, path: "/dashboard", maxAge: Int(sessions.lifetime.components.seconds), request: request))
        response.setCookie(Self.cookie(Self.loginCookie, "", path: "/dashboard/login", maxAge: 0, request: request))
        return response
    }

    /// The admin token check as a value (a typed-throws `do/catch` here crashes the Swift 6.3 SIL optimizer).
    func authenticate(_ token: String, _ context: KeybrakeRequestContext) async -> Result<AdminIdentity, KeybrakeError> {
        do {
            return .success(try await authenticator.authenticate(token: token, context: context))
        } catch {
            return .failure(error)
        }
    }

    func logout(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (_, _) = try await verifiedForm(request, context)
        if let cookie = request.cookies[Self.sessionCookie]?.value {
            try await db(context) { try await sessions.delete(cookie: cookie, logger: context.logger) }
        }
        var response = Page.redirect("/dashboard/login?notice=signed_out")
        response.setCookie(Self.cookie(Self.sessionCookie, "", path: "/dashboard", maxAge: 0, request: request))
        return response
    }

    // MARK: - Overview

    func overview(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let chrome = chrome(session, .overview)
        let now = clock.now()
        let utcToday = KeyCalendar.utcDateString(now)
        let month = String(utcToday.prefix(7))
        // Independent reads run side by side.
        async let usedRequests = db(context) {
            try await tenants.monthlyRequests(tenantId: session.tenantId, month: month + "-01", logger: context.logger)
        }
        let rows = try await todaySpend(tenantId: session.tenantId, now: now, utcToday: utcToday, context: context)

        // Uncapped keys' bars share one scale: the largest uncapped spend.
        let uncappedMax = rows.filter { $0.dailyCap == nil }.map { $0.settled + $0.reserved + $0.unknown }.max() ?? .zero
        var keyRows: [SpendRow] = []
        for k in rows {
            let spentToday = k.settled + k.reserved + k.unknown
            // Revoked keys appear only on a day they spent something.
            guard k.status == "active" || spentToday.micros > 0 else { continue }
            var row = SpendRow(settled: k.settled, reserved: k.reserved, unknown: k.unknown, cap: k.dailyCap, uncappedScale: uncappedMax)
            row.keyId = k.keyId
            row.href = "/dashboard/keys/" + pathSegment(k.keyId)
            row.label = k.label
            row.vendor = k.vendor
            row.status = k.status
            row.inactive = k.status != "active"
            keyRows.append(row)
        }
        // Nearest to the cap first, then the biggest spenders.
        keyRows.sort { a, b in
            if a.ratio != b.ratio { return a.ratio > b.ratio }
            if a.spentMicros != b.spentMicros { return a.spentMicros > b.spentMicros }
            return a.label < b.label
        }
        let near = keyRows.filter { $0.nearCap || $0.atCap }.count
        let hidden = max(0, keyRows.count - Self.overviewMaxRows)
        keyRows = Array(keyRows.prefix(Self.overviewMaxRows))

        // Per label: caps add up; one uncapped key makes the label uncapped.
        let labels = LabelSpend.group(rows.filter { $0.status == "active" || ($0.settled + $0.reserved + $0.unknown).micros > 0 })
        let labelUncappedMax = labels.filter { $0.dailyCap == nil }.map(\.spent).max() ?? .zero
        var labelRows = labels.map { l -> SpendRow in
            var row = SpendRow(settled: l.settled, reserved: l.reserved, unknown: l.unknown, cap: l.dailyCap, uncappedScale: labelUncappedMax)
            row.label = l.label
            row.keyCount = l.keys.count
            return row
        }
        labelRows.sort { a, b in a.ratio != b.ratio ? a.ratio > b.ratio : (a.spentMicros != b.spentMicros ? a.spentMicros > b.spentMicros : a.label < b.label) }
        labelRows = Array(labelRows.prefix(Self.overviewMaxRows))

        // This UTC month's proxied requests against the plan's quota.
        let used = try await usedRequests
        let plan = Plan(rawValue: session.tenantPlan) ?? .free
        let quota = tenantsConfiguration.monthlyQuota(for: plan).map(Int64.init)
        let quotaRatio = quota.map { $0 > 0 ? Double(used) / Double($0) : 1 } ?? 0
        let usage = UsageView(
            month: month, plan: plan.rawValue, requests: Format.count(used), quota: quota.map(Format.count),
            hasQuota: quota != nil, percent: String(format: "%.0f%%", (quotaRatio * 100).rounded(.down)),
            nearQuota: quota != nil && quotaRatio >= SpendRow.nearThreshold,
            rowClass: quotaRatio >= 1 ? "over" : (quotaRatio >= SpendRow.nearThreshold ? "near" : ""),
            bar: quota.map { Bar(used: used, of: $0) }
        )
        return renderer.render("overview", OverviewView(
            chrome: chrome, flash: notice(request), usage: usage, date: utcToday,
            nearKeys: near == 0 ? nil : (near == 1 ? "1 key is near or at its daily cap." : "\(near) keys are near or at their daily cap."),
            keyRows: keyRows, moreKeys: hidden == 0 ? nil : "\(hidden) more keys are not shown.", labelRows: labelRows
        ))
    }

    /// Every key's spend on its own "today" (its time zone's date). One query per distinct date; usually one.
    func todaySpend(tenantId: String, now: Date, utcToday: String, context: KeybrakeRequestContext) async throws -> [SpendRepository.KeyDay] {
        var rows = try await db(context) { try await spend.day(tenantId: tenantId, date: utcToday, logger: context.logger) }
        var elsewhere: [String: [Int]] = [:]
        var dayOfZone: [String: String] = ["UTC": utcToday]
        for (i, k) in rows.enumerated() {
            let d = dayOfZone[k.timezone] ?? KeyCalendar.periods(now: now, timezone: k.timezone).day
            dayOfZone[k.timezone] = d
            if d != utcToday { elsewhere[d, default: []].append(i) }
        }
        for (date, indices) in elsewhere {
            let other = try await db(context) { try await spend.day(tenantId: tenantId, date: date, logger: context.logger) }
            let byId = Dictionary(other.map { ($0.keyId, $0) }, uniquingKeysWith: { a, _ in a })
            for i in indices { if let r = byId[rows[i].keyId] { rows[i] = r } }
        }
        return rows
    }

    // MARK: - Keys

    func keysPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let chrome = chrome(session, .keys)
        var after: String?
        if let raw = request.uri.queryParameters["cursor"], !raw.isEmpty {
            guard let id = PageCursor.decode(String(raw), kind: "k1", idPrefix: "key_") else { throw Self.badCursor }
            after = id
        }
        guard let list = try await db(context, {
            try await keys.list(tenantId: session.tenantId, after: after, limit: Self.keysPageSize + 1, logger: context.logger)
        }) else { throw Self.badCursor }
        let page = Array(list.prefix(Self.keysPageSize))
        let now = clock.now()
        let rows = page.map { key in
            KeyRowView(id: key.id, href: "/dashboard/keys/" + pathSegment(key.id), label: key.policy.label,
                       status: key.effectiveStatus(now: now), vendor: key.policy.vendor.rawValue, policy: Self.policySummary(key.policy),
                       uncapped: key.policy.isUncapped, expires: key.policy.expiresAt.map(Format.time) ?? "never",
                       created: Format.time(key.createdAt))
        }
        let next = list.count > Self.keysPageSize ? page.last.map { "/dashboard/keys" + queryString([("cursor", PageCursor.encode($0.id, kind: "k1"))]) } : nil
        return renderer.render("keys", KeysView(chrome: chrome, flash: notice(request), keys: rows,
                                                firstHref: after == nil ? nil : "/dashboard/keys", nextHref: next))
    }

    static let badCursor = KeybrakeError.invalidRequest("This page link is not valid any more. Start again from the first page.")

    /// `POST /v1/charges, GET /v1/charges/* · $100/day · $1000/month · ≤ $50/request · 120/min`.
    static func policySummary(_ p: Policy) -> String {
        var parts: [String] = []
        let shown = p.allowedEndpoints.prefix(3).joined(separator: ", ")
        parts.append(p.allowedEndpoints.count > 3 ? shown + " +\(p.allowedEndpoints.count - 3) more" : shown)
        parts.append(contentsOf: capParts(p))
        if let rate = p.rateLimitPerMinute { parts.append("\(rate)/min") }
        return parts.joined(separator: " · ")
    }

    static func capParts(_ p: Policy) -> [String] {
        var parts: [String] = []
        if let d = p.dailyCap { parts.append(Format.usd(d) + "/day") }
        if let m = p.monthlyCap { parts.append(Format.usd(m) + "/month") }
        if let r = p.maxRequest { parts.append("≤ " + Format.usd(r) + "/request") }
        return parts
    }

    func newKeyPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let chrome = chrome(session, .keys)
        return renderer.render("key_new", KeyNewView(chrome: chrome, flash: nil, form: KeyForm()))
    }

    func createKey(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, form) = try await verifiedForm(request, context)
        var values = KeyForm(vendor: form["vendor"] ?? "")
        values.label = form["label"] ?? ""
        values.endpoints = form["allowed_endpoints"] ?? ""
        values.daily = form["daily_usd_cap"] ?? ""
        values.monthly = form["monthly_usd_cap"] ?? ""
        values.maxRequest = form["max_request_usd"] ?? ""
        values.expires = form["expires_at"] ?? ""
        values.rate = form["rate_limit_per_minute"] ?? ""
        values.timezone = form["timezone"] ?? ""
        values.window = form["duplicate_window_seconds"] ?? ""
        values.autoIdempotency = form["auto_idempotency"] != nil
        values.accounts = form["allowed_stripe_accounts"] ?? ""

        // The same validation as POST /v1/keys: the form is turned into that JSON body.
        var fields: [String: JSONValue] = [
            "vendor": .string(form["vendor"] ?? ""),
            "label": .string(values.label),
            "allowed_endpoints": .array(Self.lines(values.endpoints).map(JSONValue.string)),
            "auto_idempotency": .bool(values.autoIdempotency),
        ]
        if let v = form.nonEmpty("daily_usd_cap") { fields["daily_usd_cap"] = .string(v) }
        if let v = form.nonEmpty("monthly_usd_cap") { fields["monthly_usd_cap"] = .string(v) }
        if let v = form.nonEmpty("max_request_usd") { fields["max_request_usd"] = .string(v) }
        if let v = form.nonEmpty("expires_at") { fields["expires_at"] = .string(Self.utcTimestamp(v)) }
        if let v = form.nonEmpty("rate_limit_per_minute") { fields["rate_limit_per_minute"] = .number(v) }
        if let v = form.nonEmpty("timezone") { fields["timezone"] = .string(v) }
        if let v = form.nonEmpty("duplicate_window_seconds") { fields["duplicate_window_seconds"] = .number(v) }
        if let v = form.nonEmpty("allowed_stripe_accounts") {
            fields["allowed_stripe_accounts"] = .array(v.split(whereSeparator: { $0 == "," || $0.isWhitespace }).map { .string(String($0)) })
        }
        let key: VaultKey
        let token: String
        do {
            var policy = try KeysController.parseCreate(JSONObjectReader(fields))
            policy.label = policy.label.trimmingCharacters(in: .whitespaces)
            try policy.validate(now: clock.now())
            let (generated, publicId) = TokenFormat.generate(.vault)
            let hash = try await verifier.hashForStorage(generated)
            key = try await db(context) {
                try await keys.create(id: "key_" + publicId, tenantId: session.tenantId, tokenHash: hash, policy: policy, logger: context.logger)
            }
            token = generated
        } catch let error as KeybrakeError where error.status == 400 {
            let chrome = chrome(session, .keys)
            return renderer.render("key_new", KeyNewView(chrome: chrome, flash: .error(Self.message(error)), form: values), status: .badRequest)
        }
        let chrome = chrome(session, .keys)
        // Not a redirect: the token exists only in this response (shown once, never stored, never cached).
        return renderer.render("key_created", KeyCreatedView(
            chrome: chrome, id: key.id, label: key.policy.label, vendor: key.policy.vendor.rawValue, token: token,
            href: "/dashboard/keys/" + pathSegment(key.id)
        ), status: .created)
    }

    /// An error message with its field, in the admin API's words.
    static func message(_ error: KeybrakeError) -> String {
        guard let field = error.field, !error.message.hasPrefix(field) else { return error.message }
        return "\(field): \(error.message)"
    }

    static func lines(_ text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// `<input type="datetime-local">` sends `2026-07-01T00:00` (no zone): the form labels it UTC.
    static func utcTimestamp(_ text: String) -> String {
        if RFC3339.parse(text) != nil { return text }
        let colons = text.filter { $0 == ":" }.count
        return text + (colons == 1 ? ":00Z" : "Z")
    }

    func loadKey(_ session: DashboardSession, _ context: KeybrakeRequestContext) async throws -> VaultKey {
        let id = context.parameters.get("id") ?? ""
        guard let key = try await db(context, { try await keys.key(id: id, tenantId: session.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("key")
        }
        return key
    }

    func keyPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let key = try await loadKey(session, context)
        return try await renderKey(key, session: session, flash: notice(request), capsValues: nil, status: .ok, request: request, context: context)
    }

    func renderKey(_ key: VaultKey, session: DashboardSession, flash: Flash?, capsValues: (String, String, String)?,
                   status: HTTPResponse.Status, request: Request, context: KeybrakeRequestContext) async throws -> Response {
        let chrome = chrome(session, .keys)
        let now = clock.now()
        let spend = try await db(context) { try await keySpend.spend(of: key, now: now, context: context) }
        let p = key.policy
        let keyStatus = key.effectiveStatus(now: now)
        let facts = KeyFacts(
            id: key.id, label: p.label, status: keyStatus, vendor: p.vendor.rawValue, endpoints: p.allowedEndpoints,
            caps: Self.capParts(p).joined(separator: " · ").nonEmptyOr("none"), uncapped: p.isUncapped,
            expires: p.expiresAt.map(Format.time) ?? "never", rate: p.rateLimitPerMinute.map { "\($0) requests per minute" } ?? "none",
            timezone: p.timezone,
            idempotency: (p.autoIdempotency ? "automatic Idempotency-Key on POSTs" : "agent-supplied keys only")
                + (p.duplicateWindowSeconds > 0 ? "; duplicate guard \(p.duplicateWindowSeconds) s" : "; duplicate guard off"),
            accounts: p.allowedStripeAccounts.isEmpty ? "none (Stripe-Account header refused)" : p.allowedStripeAccounts.joined(separator: ", "),
            created: Format.time(key.createdAt), revokedAt: key.revokedAt.map(Format.time)
        )
        func period(_ name: String, _ s: KeySpend.Period) -> SpendRow {
            var row = SpendRow(settled: s.settled, reserved: s.reserved, unknown: s.unknown, cap: s.cap,
                               uncappedScale: s.settled + s.reserved + s.unknown)
            row.name = name
            row.start = s.start
            return row
        }
        let href = "/dashboard/keys/" + pathSegment(key.id)
        let caps = key.status == .active ? CapsForm(
            action: href + "/caps", revokeHref: href + "/revoke",
            daily: capsValues?.0 ?? Format.field(p.dailyCap), monthly: capsValues?.1 ?? Format.field(p.monthlyCap),
            maxRequest: capsValues?.2 ?? Format.field(p.maxRequest)
        ) : nil
        return renderer.render("key", KeyView(
            chrome: chrome, flash: flash, key: facts,
            periods: [period("Today", spend.today), period("This month", spend.month)],
            auditHref: "/dashboard/audit" + queryString([("key_id", key.id)]), caps: caps
        ), status: status)
    }

    func saveCaps(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, form) = try await verifiedForm(request, context)
        let id = context.parameters.get("id") ?? ""
        var fields: [String: JSONValue] = [:]
        for name in ["daily_usd_cap", "monthly_usd_cap", "max_request_usd"] {
            fields[name] = form.nonEmpty(name).map(JSONValue.string) ?? .null
        }
        let json = JSONObjectReader(fields)
        do {
            let updated = try await db(context) {
                try await keys.update(id: id, tenantId: session.tenantId, logger: context.logger) { current in
                    guard current.status == .active else {
                        throw KeybrakeError(status: 409, code: "key_revoked", message: "This key is revoked; its caps can no longer change.")
                    }
                    var policy = current.policy
                    try KeysController.apply(json, to: &policy)
                    try policy.validate(now: nil)
                    return policy
                }
            }
            guard updated != nil else { throw KeybrakeError.notFound("key") }
        } catch let error as KeybrakeError where error.status == 400 || error.status == 409 {
            let key = try await loadKey(session, context)
            return try await renderKey(key, session: session, flash: .error(Self.message(error)),
                                       capsValues: (form["daily_usd_cap"] ?? "", form["monthly_usd_cap"] ?? "", form["max_request_usd"] ?? ""),
                                       status: HTTPResponse.Status(code: error.status), request: request, context: context)
        }
        return Page.redirect("/dashboard/keys/" + pathSegment(id) + "?notice=caps_saved")
    }

    func revokePage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let key = try await loadKey(session, context)
        let chrome = chrome(session, .keys)
        let href = "/dashboard/keys/" + pathSegment(key.id)
        guard key.status == .active else { return Page.redirect(href) }
        return renderer.render("key_revoke", KeyRevokeView(
            chrome: chrome, id: key.id, label: key.policy.label, vendor: key.policy.vendor.rawValue,
            action: href + "/revoke", cancelHref: href
        ))
    }

    func revoke(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, _) = try await verifiedForm(request, context)
        let id = context.parameters.get("id") ?? ""
        guard let key = try await db(context, { try await keys.revoke(id: id, tenantId: session.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("key")
        }
        context.logger.info("vault key revoked from the dashboard", metadata: ["key_id": "\(key.id)"])
        return Page.redirect("/dashboard/keys/" + pathSegment(key.id) + "?notice=revoked")
    }

    // MARK: - Audit

    /// The audit filters the page offers (and carries into its page links); parsed by Audit, as GET /v1/audit's are.
    static let auditFilterParameters = ["key_id", "vendor", "decision", "outcome"]

    func auditPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let chrome = chrome(session, .audit)
        let q = request.uri.queryParameters
        func param(_ name: String) -> String? { q[Substring(name)].map(String.init).flatMap { $0.isEmpty ? nil : $0 } }
        var asked: [String: String] = [:]
        for name in Self.auditFilterParameters { asked[name] = param(name) }
        let filter = try AuditFilter.parse(asked)
        var after: String?
        if let raw = param("cursor") {
            guard let id = PageCursor.decode(raw, kind: "a1", idPrefix: "aud_") else { throw Self.badCursor }
            after = id
        }
        let tenantId = session.tenantId
        async let filterKeys = db(context) {
            try await keys.list(tenantId: tenantId, after: nil, limit: Self.filterMaxKeys, logger: context.logger) ?? []
        }
        let listed = try await db(context) {
            try await audit.list(tenantId: tenantId, filter: filter, after: after, limit: Self.auditPageSize + 1, logger: context.logger)
        }
        let keyList = try await filterKeys
        guard let records = listed else { throw Self.badCursor }
        let page = Array(records.prefix(Self.auditPageSize))
        var keyOptions = [Option(value: "", text: "All keys", selected: filter.keyId == nil)]
        keyOptions += keyList.map { Option(value: $0.id, text: "\($0.policy.label) (\($0.id))", selected: $0.id == filter.keyId) }
        if let k = filter.keyId, !keyList.contains(where: { $0.id == k }) { keyOptions.append(Option(value: k, text: k, selected: true)) }
        let filters = AuditFilters(
            keyOptions: keyOptions,
            vendorOptions: [Option(value: "", text: "All vendors", selected: filter.vendor == nil)]
                + Vendor.allCases.map { Option(value: $0.rawValue, text: $0.rawValue, selected: $0.rawValue == filter.vendor) },
            decisionOptions: [Option(value: "", text: "Any decision", selected: filter.decision == nil)]
                + AuditFilter.decisions.map { Option(value: $0, text: $0, selected: $0 == filter.decision) },
            outcomeOptions: [Option(value: "", text: "Any outcome", selected: filter.outcome == nil)]
                + AuditFilter.outcomes.map { Option(value: $0, text: $0, selected: $0 == filter.outcome) }
        )
        let events = page.map { r in
            AuditRowView(
                id: r.id, href: "/dashboard/audit/" + pathSegment(r.id), time: Format.time(r.createdAt), keyId: r.keyId ?? "",
                keyLabel: r.keyLabel ?? "", vendor: r.vendor, method: r.method, path: r.path, operation: r.operation,
                decision: r.decision, errorCode: r.errorCode, upstreamStatus: r.upstreamStatus.map(String.init) ?? "",
                amount: r.amountMicros == 0 && r.amountMinor == nil ? "" : Format.usd(MicroUSD(r.amountMicros)),
                outcome: r.outcome, rowClass: r.outcome == "outcome_unknown" ? "unknown" : (r.decision == "denied" ? "denied" : "")
            )
        }
        let base: [(String, String?)] = [("key_id", filter.keyId), ("vendor", filter.vendor), ("decision", filter.decision), ("outcome", filter.outcome)]
        let next = records.count > Self.auditPageSize ? page.last.map { "/dashboard/audit" + queryString(base + [("cursor", PageCursor.encode($0.id, kind: "a1"))]) } : nil
        return renderer.render("audit", AuditView(
            chrome: chrome, flash: notice(request), filters: filters, events: events,
            firstHref: after == nil ? nil : "/dashboard/audit" + queryString(base), nextHref: next
        ))
    }

    func auditEventPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        return try await renderAuditEvent(session: session, flash: notice(request), status: .ok, request: request, context: context)
    }

    func renderAuditEvent(session: DashboardSession, flash: Flash?, status: HTTPResponse.Status,
                          request: Request, context: KeybrakeRequestContext) async throws -> Response {
        let chrome = chrome(session, .audit)
        let id = context.parameters.get("id") ?? ""
        guard let r = try await db(context, { try await audit.record(tenantId: session.tenantId, id: id, logger: context.logger) }) else {
            throw KeybrakeError.notFound("audit event")
        }
        let resolution = try await db(context) { try await audit.resolution(tenantId: session.tenantId, of: id, logger: context.logger) }
        func link(_ id: String?) -> String? { id.map { "/dashboard/audit/" + pathSegment($0) } }
        func micros(_ us: Int64?) -> String { us.map { String(format: "%.2f ms", Double($0) / 1000) } ?? "—" }
        let detail = AuditDetail(
            id: r.id, time: Format.time(r.createdAt), keyId: r.keyId ?? "", keyLabel: r.keyLabel ?? "",
            keyHref: r.keyId.map { "/dashboard/keys/" + pathSegment($0) }, vendor: r.vendor, method: r.method, path: r.path,
            operation: r.operation, decision: r.decision, errorCode: r.errorCode,
            upstreamStatus: r.upstreamStatus.map(String.init) ?? "— (not forwarded or no answer)",
            amount: Format.usd(MicroUSD(r.amountMicros)),
            original: r.amountMinor.map { minor in "\(minor) minor units of \((r.currency ?? "").uppercased())" },
            outcome: r.outcome, idempotencyKey: r.idempotencyKey ?? "—", idempotencyAuto: r.idempotencyAuto,
            upstreamRequestId: r.upstreamRequestId ?? "—", runId: r.runId ?? "—",
            duplicateOf: r.duplicateOf ?? "", duplicateOfHref: link(r.duplicateOf),
            resolves: r.resolves ?? "", resolvesHref: link(r.resolves),
            resolvedBy: resolution?.id ?? "", resolvedByHref: link(resolution?.id),
            overhead: micros(r.overheadUs), upstreamLatency: micros(r.upstreamUs)
        )
        let resolve = r.outcome == "outcome_unknown" && resolution == nil && r.decision != "resolved"
            ? ResolveForm(action: "/dashboard/audit/" + pathSegment(r.id) + "/resolve", reserved: Format.usd(MicroUSD(r.amountMicros)),
                          reservedField: MicroUSD(r.amountMicros).dollarString,
                          upstreamHint: r.idempotencyKey.map { "look for Idempotency-Key \($0)" })
            : nil
        return renderer.render("audit_event", AuditEventView(chrome: chrome, flash: flash, event: detail, resolve: resolve), status: status)
    }

    /// The dashboard's form of POST /v1/audit/{id}/resolve: same rules, same ledger function.
    func resolve(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, form) = try await verifiedForm(request, context)
        let id = context.parameters.get("id") ?? ""
        func refuse(_ message: String, _ status: HTTPResponse.Status) async throws -> Response {
            try await renderAuditEvent(session: session, flash: .error(message), status: status, request: request, context: context)
        }
        let outcome = form["outcome"] ?? ""
        guard outcome == "settled" || outcome == "released" else {
            return try await refuse("Choose whether the request happened (settle) or not (release).", .badRequest)
        }
        var amount: MicroUSD?
        if outcome == "settled" {
            guard let text = form.nonEmpty("amount_usd") else {
                return try await refuse("Say how much actually moved to settle it.", .badRequest)
            }
            do {
                amount = try JSONObjectReader(["amount_usd": .string(text)]).usd("amount_usd", maxDecimals: 6)
            } catch {
                return try await refuse(error.message, .badRequest)
            }
        }
        let result = try await db(context) {
            try await audit.resolve(tenantId: session.tenantId, auditId: id, outcome: outcome, amount: amount, logger: context.logger)
        }
        switch result {
        case .notFound:
            throw KeybrakeError.notFound("audit event")
        case .resolved:
            return Page.redirect("/dashboard/audit/" + pathSegment(id) + "?notice=resolved")
        case .refused("amount_too_large", let reserved):
            return try await refuse("The amount cannot exceed the \(Format.usd(MicroUSD(reserved))) reserved for this request.", .badRequest)
        case .refused(let code, _) where code.hasPrefix("already_"):
            return try await refuse("This request's outcome is already \(code.dropFirst("already_".count)).", .conflict)
        case .refused:
            return try await refuse("Only a request whose outcome is unknown can be resolved.", .conflict)
        }
    }

    // MARK: - Vendor credentials

    static func fields(_ vendor: Vendor) -> [CredentialField] {
        switch vendor {
        case .stripe: [CredentialField(name: "secret_key", text: "Secret key", inputType: "password", placeholder: "sk_live_… or rk_live_…")]
        case .twilio: [CredentialField(name: "account_sid", text: "Account SID", inputType: "text", placeholder: "AC…"),
                       CredentialField(name: "auth_token", text: "Auth token", inputType: "password", placeholder: "")]
        case .resend: [CredentialField(name: "api_key", text: "API key", inputType: "password", placeholder: "re_…")]
        }
    }

    static func title(_ vendor: Vendor) -> String {
        switch vendor {
        case .stripe: "Stripe"
        case .twilio: "Twilio"
        case .resend: "Resend"
        }
    }

    func vendor(_ context: KeybrakeRequestContext) throws -> Vendor {
        guard let v = Vendor(rawValue: context.parameters.get("vendor") ?? "") else { throw KeybrakeError.notFound("vendor") }
        return v
    }

    func vendorsPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        return try await renderVendors(session: session, flash: notice(request), status: .ok, context: context)
    }

    func renderVendors(session: DashboardSession, flash: Flash?, status: HTTPResponse.Status, context: KeybrakeRequestContext) async throws -> Response {
        let chrome = chrome(session, .vendors)
        let tenantId = session.tenantId
        async let stripe = db(context) { try await credentials.summary(vendor: .stripe, tenantId: tenantId, logger: context.logger) }
        async let twilio = db(context) { try await credentials.summary(vendor: .twilio, tenantId: tenantId, logger: context.logger) }
        async let resend = db(context) { try await credentials.summary(vendor: .resend, tenantId: tenantId, logger: context.logger) }
        let summaries: [Vendor: CredentialSummary?] = [.stripe: try await stripe, .twilio: try await twilio, .resend: try await resend]
        var views: [VendorView] = []
        for vendor in Vendor.allCases {
            let summary = summaries[vendor] ?? nil
            views.append(VendorView(
                name: vendor.rawValue, title: Self.title(vendor),
                stored: summary.map { StoredCredential(fingerprint: $0.fingerprint, accountSid: $0.accountSid, updated: Format.time($0.updatedAt)) },
                fields: Self.fields(vendor), action: "/dashboard/vendors/" + vendor.rawValue,
                deleteHref: "/dashboard/vendors/" + vendor.rawValue + "/delete"
            ))
        }
        return renderer.render("vendors", VendorsView(chrome: chrome, flash: flash, vendors: views), status: status)
    }

    func saveCredentials(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, form) = try await verifiedForm(request, context)
        let vendor = try vendor(context)
        var fields: [String: JSONValue] = [:]
        for name in VendorCredentials.allowedFields(vendor) { fields[name] = form[name].map(JSONValue.string) ?? .null }
        let parsed: VendorCredentials
        do {
            parsed = try VendorCredentials.parse(vendor, JSONObjectReader(fields))
        } catch {
            // The secret is never echoed back into the page.
            return try await renderVendors(session: session, flash: .error("\(Self.title(vendor)): \(error.message)"), status: .badRequest, context: context)
        }
        _ = try await db(context) { try await credentials.put(parsed, tenantId: session.tenantId, logger: context.logger) }
        return Page.redirect("/dashboard/vendors?notice=credentials_saved")
    }

    func deleteCredentialsPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let vendor = try vendor(context)
        let chrome = chrome(session, .vendors)
        guard let summary = try await db(context, { try await credentials.summary(vendor: vendor, tenantId: session.tenantId, logger: context.logger) }) else {
            return Page.redirect("/dashboard/vendors")
        }
        return renderer.render("vendor_delete", VendorDeleteView(
            chrome: chrome, title: Self.title(vendor), fingerprint: summary.fingerprint,
            action: "/dashboard/vendors/" + vendor.rawValue + "/delete"
        ))
    }

    func deleteCredentials(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, _) = try await verifiedForm(request, context)
        let vendor = try vendor(context)
        _ = try await db(context) { try await credentials.delete(vendor: vendor, tenantId: session.tenantId, logger: context.logger) }
        return Page.redirect("/dashboard/vendors?notice=credentials_deleted")
    }

    // MARK: - Helpers

    /// A database call: errors mapped to the public vocabulary, time added to the page's `Server-Timing: db`.
    func db<T>(_ context: KeybrakeRequestContext, _ body: () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        defer { ServerTiming.current?.addDatabase(ContinuousClock.now - start) }
        do { return try await body() } catch let error as KeybrakeError { throw error } catch { throw DatabaseErrors.map(error, logger: context.logger) }
    }
}

extension String {
    func nonEmptyOr(_ fallback: String) -> String { isEmpty ? fallback : self }
}

extension HTTPField.Name {
    static let xForwardedProto = HTTPField.Name("X-Forwarded-Proto")!
    static let forwarded = HTTPField.Name("Forwarded")!
    static let serverTiming = HTTPField.Name("Server-Timing")!
    static let xFrameOptions = HTTPField.Name("X-Frame-Options")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
}

/// Thrown by any page that needs a session when there is none: the middleware answers 303 to the sign-in page.
struct SignInRequired: Error {}

/// Renders a named template and records how long rendering took (`Server-Timing: render`).
struct Renderer: Sendable {
    let library: MustacheLibrary

    func render(_ name: String, _ view: Any, status: HTTPResponse.Status = .ok) -> Response {
        let start = ContinuousClock.now
        let html = library.render(ViewTree.convert(view) ?? [String: Any](), withTemplate: name) ?? ""
        var response = Page.html(html, status: status)
        response.headers[.serverTiming] = "render;dur=" + ServerTiming.milliseconds(ContinuousClock.now - start)
        return response
    }
}

/// Turns a view model into dictionaries and arrays once, up front. Mustache would otherwise reflect a struct
/// (`Mirror`) on every `{{name}}` lookup, which dominates render time on a page with many rows.
enum ViewTree {
    static func convert(_ value: Any) -> Any? {
        switch value {
        case let v as String: return v
        case let v as Bool: return v
        case let v as Int: return v
        case let v as Int64: return v
        case let v as Double: return v
        case let v as [Any]: return v.compactMap(convert)
        case let v as MustacheParent: return v  // answers lookups itself, without reflection
        default:
            let mirror = Mirror(reflecting: value)
            switch mirror.displayStyle {
            case .optional?:
                return mirror.children.first.flatMap { convert($0.value) }
            case .struct?, .class?:
                var fields: [String: Any] = [:]
                for child in mirror.children {
                    if let label = child.label, let v = convert(child.value) { fields[label] = v }
                }
                return fields
            default:
                return value
            }
        }
    }
}

/// Per-request timings for the `Server-Timing` header (database time is summed over the request's queries).
final class ServerTiming: Sendable {
    @TaskLocal static var current: ServerTiming?

    private let database = NIOLockedValueBox(Duration.zero)
    func addDatabase(_ d: Duration) { database.withLockedValue { $0 += d } }
    var databaseTime: Duration { database.withLockedValue { $0 } }

    static func milliseconds(_ d: Duration) -> String {
        let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return String(format: "%.2f", ms)
    }
}

/// Around every /dashboard route: HTML errors (never the admin API's JSON), the sign-in redirect, security headers,
/// and `Server-Timing: total;dur=…` — the server-side time of the whole page, from session lookup to rendered HTML.
struct DashboardMiddleware: RouterMiddleware {
    typealias Context = KeybrakeRequestContext
    let renderer: Renderer

    /// No inline script or style anywhere: bars are SVG attributes, behaviour lives in /dashboard/assets.
    static let contentSecurityPolicy =
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let timing = ServerTiming()
        var response: Response
        do {
            response = try await ServerTiming.$current.withValue(timing) { try await next(request, context) }
        } catch is SignInRequired {
            response = Page.redirect("/dashboard/login")
        } catch {
            let kb = RequestEnvelopeMiddleware.keybrakeError(from: error, logger: context.logger)
            let heading = switch kb.status {
            case 404: "Not found"
            case 403: "Not allowed"
            case 400, 409, 413: "That did not work"
            default: "Something went wrong"
            }
            response = renderer.render("error", ErrorView(chrome: nil, heading: heading, message: kb.message), status: HTTPResponse.Status(code: kb.status))
            response.headers[.keybrakeErrorCode] = kb.code
        }
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "same-origin"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        let total = "db;dur=" + ServerTiming.milliseconds(timing.databaseTime) + ", total;dur=" + ServerTiming.milliseconds(ContinuousClock.now - start)
        if let render = response.headers[.serverTiming] {
            response.headers[.serverTiming] = render + ", " + total
        } else {
            response.headers[.serverTiming] = total
        }
        return response
    }
}
