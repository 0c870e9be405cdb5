import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Keys
import TokenAuth

extension DashboardController {
    func keysPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let chrome = chrome(session, .keys)
        let paging = try Paging(cursor: request.uri.queryParameters["cursor"].map(String.init), kind: "k1", idPrefix: "key_")
        guard let list = try await db(context, {
            try await keys.list(tenantId: session.tenantId, after: paging.after, limit: Self.keysPageSize + 1, logger: context.logger)
        }) else { throw Self.badCursor }
        let page = paging.page(list, size: Self.keysPageSize, path: "/dashboard/keys", id: \.id)
        let now = clock.now()
        let rows = page.rows.map { key in
            KeyRowView(id: key.id, href: "/dashboard/keys/" + pathSegment(key.id), label: key.policy.label,
                       status: key.effectiveStatus(now: now), vendor: key.policy.vendor.rawValue, policy: Self.policySummary(key.policy),
                       uncapped: key.policy.isUncapped, expires: key.policy.expiresAt.map(Format.time) ?? "never",
                       created: Format.time(key.createdAt))
        }
        return renderer.render("keys", KeysView(chrome: chrome, flash: notice(request), keys: rows,
                                                firstHref: page.firstHref, nextHref: page.nextHref))
    }

    /// Runs listed on a key's page (the API pages through all of them).
    static let runsShown = 50

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
        if let t = p.totalCap { parts.append(Format.usd(t) + " lifetime") }
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
            try keyCreations.admit(tenantId: session.tenantId)
            let (generated, publicId) = TokenFormat.generate(.vault)
            let hash = try await verifier.hashForStorage(generated, tenant: session.tenantId)
            key = try await db(context) {
                try await keys.create(id: "key_" + publicId, tenantId: session.tenantId, tokenHash: hash, policy: policy, logger: context.logger)
            }
            token = generated
        } catch let error as KeybrakeError where error.status == 400 || error.status == 429 {
            let chrome = chrome(session, .keys)
            var page = renderer.render("key_new", KeyNewView(chrome: chrome, flash: .error(Self.message(error)), form: values),
                                       status: .init(code: error.status))
            if let retry = error.retryAfterSeconds { page.headers[.retryAfter] = String(retry) }
            return page
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
        let charts = try await keyCharts(key, now: now, context: context)
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
        let summary = try await db(context) { try await keys.childSummary(of: key.id, tenantId: session.tenantId, logger: context.logger) }
        var runs: RunsView?
        if summary.count > 0 {
            let children = try await db(context) {
                try await keys.children(of: key.id, tenantId: session.tenantId, after: nil, limit: Self.runsShown + 1, logger: context.logger)
            } ?? []
            let rows = children.prefix(Self.runsShown).map { child, counted in
                let childHref = "/dashboard/keys/" + pathSegment(child.id)
                let childStatus = child.effectiveStatus(now: now)
                let cap = child.policy.totalCap ?? child.policy.dailyCap
                return RunRow(id: child.id, href: childHref, label: child.policy.label, runId: child.runId, status: childStatus,
                              expires: child.policy.expiresAt.map(Format.time) ?? "never",
                              spend: SpendRow(settled: counted, reserved: .zero, unknown: .zero, cap: cap, uncappedScale: counted),
                              revokeHref: childStatus == "active" ? childHref + "/revoke" : nil)
            }
            runs = RunsView(count: summary.count, active: summary.active, counted: Format.usd(summary.counted), rows: Array(rows),
                            more: children.count > Self.runsShown,
                            auditHref: "/dashboard/audit" + queryString([("parent_key_id", key.id)]))
        }
        let parent = key.parentId.map { LinkView(href: "/dashboard/keys/" + pathSegment($0), text: $0) }
        let caps = key.status == .active ? CapsForm(
            action: href + "/caps", revokeHref: href + "/revoke",
            daily: capsValues?.0 ?? Format.field(p.dailyCap), monthly: capsValues?.1 ?? Format.field(p.monthlyCap),
            maxRequest: capsValues?.2 ?? Format.field(p.maxRequest)
        ) : nil
        return renderer.render("key", KeyView(
            chrome: chrome, flash: flash, key: facts,
            periods: [period("Today", spend.today), period("This month", spend.month), period("Lifetime", spend.total)],
            hourChart: charts.hours, dayChart: charts.days,
            auditHref: "/dashboard/audit" + queryString([("key_id", key.id)]), caps: caps, parent: parent, runs: runs
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
            try keyChangeLimit.admit(tenantId: session.tenantId)
            // A child key's caps stay within its parent's, as through the API.
            var parentPolicy: Policy?
            if let parentId = try await db(context, { try await keys.key(id: id, tenantId: session.tenantId, logger: context.logger)?.parentId }) {
                parentPolicy = try await db(context) { try await keys.key(id: parentId, tenantId: session.tenantId, logger: context.logger)?.policy }
            }
            let parentRule = parentPolicy
            let updated = try await db(context) {
                try await keys.update(id: id, tenantId: session.tenantId, logger: context.logger) { current in
                    guard current.status == .active else {
                        throw KeybrakeError(status: 409, code: .keyRevoked, message: "This key is revoked; its caps can no longer change.")
                    }
                    var policy = current.policy
                    try KeysController.apply(json, to: &policy)
                    try policy.validate(now: nil)
                    if let parentRule { try ChildKeyRules.check(policy, within: parentRule) }
                    return policy
                }
            }
            guard let updated else { throw KeybrakeError.notFound("key") }
            _ = try await db(context) { try await keyChanges?.wait(for: updated.change, logger: context.logger) }
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
            confirm: ConfirmForm(action: href + "/revoke", buttonId: "confirm-revoke", buttonText: "Revoke key", cancelHref: href)
        ))
    }

    func revoke(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, _) = try await verifiedForm(request, context)
        try keyChangeLimit.admit(tenantId: session.tenantId)
        let id = context.parameters.get("id") ?? ""
        guard let (key, change) = try await db(context, { try await keys.revoke(id: id, tenantId: session.tenantId, logger: context.logger) }) else {
            throw KeybrakeError.notFound("key")
        }
        _ = try await db(context) { try await keyChanges?.wait(for: change, logger: context.logger) }
        context.logger.info("vault key revoked from the dashboard", metadata: ["key_id": "\(key.id)"])
        return Page.redirect("/dashboard/keys/" + pathSegment(key.id) + "?notice=revoked")
    }
}
