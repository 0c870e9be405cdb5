import Audit
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Keys

extension DashboardController {
    /// The audit filters the page offers (and carries into its page links); parsed by Audit, as GET /v1/audit's are.
    static let auditFilterParameters = ["key_id", "parent_key_id", "vendor", "decision", "outcome"]

    func auditPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let chrome = chrome(session, .audit)
        let q = request.uri.queryParameters
        func param(_ name: String) -> String? { q[Substring(name)].map(String.init).flatMap { $0.isEmpty ? nil : $0 } }
        var asked: [String: String] = [:]
        for name in Self.auditFilterParameters { asked[name] = param(name) }
        let filter = try AuditFilter.parse(asked, defaultWindowUntil: Date())
        let paging = try Paging(cursor: param("cursor"), kind: "a1", idPrefix: "aud_")
        let tenantId = session.tenantId
        async let filterKeys = db(context) {
            try await keys.list(tenantId: tenantId, after: nil, limit: Self.filterMaxKeys, logger: context.logger) ?? []
        }
        let listed = try await db(context) {
            try await audit.list(tenantId: tenantId, filter: filter, after: paging.after, limit: Self.auditPageSize + 1, logger: context.logger)
        }
        let keyList = try await filterKeys
        guard let records = listed else { throw Self.badCursor }
        let base: [(String, String?)] = [("key_id", filter.keyId), ("parent_key_id", filter.parentKeyId), ("vendor", filter.vendor), ("decision", filter.decision), ("outcome", filter.outcome)]
        let page = paging.page(records, size: Self.auditPageSize, path: "/dashboard/audit", query: base, id: \.id)
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
        let events = page.rows.map { r in
            AuditRowView(
                id: r.id, href: "/dashboard/audit/" + pathSegment(r.id), time: Format.time(r.createdAt), keyId: r.keyId ?? "",
                keyLabel: r.keyLabel ?? "", vendor: r.vendor, method: r.method, path: r.path, operation: r.operation,
                decision: r.decision, errorCode: r.errorCode ?? r.state, upstreamStatus: r.upstreamStatus.map(String.init) ?? "",
                amount: r.amountMicros == 0 && r.amountMinor == nil ? "" : Format.usd(MicroUSD(r.amountMicros)),
                outcome: r.outcome, rowClass: r.outcome == "outcome_unknown" ? "unknown" : (r.decision == "denied" ? "denied" : "")
            )
        }
        return renderer.render("audit", AuditView(
            chrome: chrome, flash: notice(request), filters: filters, events: events,
            firstHref: page.firstHref, nextHref: page.nextHref
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
            operation: r.operation, decision: r.decision, errorCode: r.errorCode ?? r.state,
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
}
