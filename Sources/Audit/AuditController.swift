import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage

/// GET /v1/audit (JSON or CSV), GET /v1/audit/{id}, POST /v1/audit/{id}/resolve, GET /v1/spend, GET /v1/spend/series,
/// GET /v1/usage.
public struct AuditController: Sendable {
    let audit: AuditRepository
    let spend: SpendRepository
    let clock: any KeybrakeCore.Clock
    /// The tenant's plan and monthly quota (nil = unlimited), from Tenants via the composition root.
    let planQuota: @Sendable (String, KeybrakeRequestContext) async throws -> (plan: String, quota: Int?)

    public static let defaultPageSize = 100
    public static let maxPageSize = 500

    public init(audit: AuditRepository, spend: SpendRepository, clock: any KeybrakeCore.Clock,
                planQuota: @escaping @Sendable (String, KeybrakeRequestContext) async throws -> (plan: String, quota: Int?)) {
        self.audit = audit
        self.spend = spend
        self.clock = clock
        self.planQuota = planQuota
    }

    public func addAdminRoutes(to group: some RouterMethods<KeybrakeRequestContext>) {
        group.get("/audit") { request, context in try await self.list(request, context) }
        group.get("/audit/:id") { _, context in try await self.show(context) }
        group.post("/audit/:id/resolve") { request, context in try await self.resolve(request, context) }
        group.get("/spend") { request, context in try await self.daySpend(request, context) }
        group.get("/spend/series") { request, context in try await self.spendSeries(request, context) }
        group.get("/usage") { request, context in try await self.usage(request, context) }
    }

    // MARK: - Audit

    static func queryDictionary(_ request: Request) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in request.uri.queryParameters { out[String(k)] = String(v) }
        return out
    }

    func list(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let query = Self.queryDictionary(request)
        let filter = try AuditFilter.parse(query)
        var limit = Self.defaultPageSize
        if let raw = query["limit"] {
            guard let n = Int(raw), (1...Self.maxPageSize).contains(n) else {
                throw KeybrakeError.invalidRequest("limit must be a whole number from 1 to \(Self.maxPageSize).", field: "limit")
            }
            limit = n
        }
        var after: String?
        if let raw = query["cursor"], !raw.isEmpty {
            guard let id = PageCursor.decode(raw, kind: "a1", idPrefix: "aud_") else {
                throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor")
            }
            after = id
        }
        guard let rows = try await db(context, {
            try await audit.list(tenantId: admin.tenantId, filter: filter, after: after, limit: limit + 1, logger: context.logger)
        }) else {
            throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint.", field: "cursor")
        }
        let page = Array(rows.prefix(limit))
        let next = rows.count > limit ? page.last.map { PageCursor.encode($0.id, kind: "a1") } : nil
        if let accept = request.headers[.accept], accept.contains("text/csv") {
            var headers: HTTPFields = [.contentType: "text/csv; charset=utf-8",
                                       .contentDisposition: "attachment; filename=\"keybrake-audit.csv\""]
            if let next { headers[HTTPField.Name("Keybrake-Next-Cursor")!] = next }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: CSV.render(page))))
        }
        struct Page: Encodable { let data: [AuditRecord]; @NullEncoded var nextCursor: String? }
        return try JSONResponse.make(.ok, Page(data: page, nextCursor: next))
    }

    func show(_ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        guard let record = try await db(context, { try await audit.record(tenantId: admin.tenantId, id: id, logger: context.logger) }) else {
            throw KeybrakeError.notFound("audit event")
        }
        let resolution = try await db(context) { try await audit.resolution(tenantId: admin.tenantId, of: id, logger: context.logger) }
        struct Shown: Encodable { let event: AuditRecord; @NullEncoded var resolvedBy: String? }
        return try JSONResponse.make(.ok, Shown(event: record, resolvedBy: resolution?.id))
    }

    func resolve(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let id = context.parameters.get("id") ?? ""
        let json = try await JSONObjectReader.decode(request, context: context)
        try json.rejectUnknown(allowed: ["outcome", "amount_usd"])
        let outcome = try json.string("outcome", required: true, maxLength: 20) ?? ""
        guard outcome == "settled" || outcome == "released" else {
            throw KeybrakeError.invalidRequest("outcome must be settled (the vendor acted) or released (it did not).", field: "outcome")
        }
        let amount = try json.usd("amount_usd", maxDecimals: 6)
        if outcome == "settled", amount == nil {
            throw KeybrakeError.invalidRequest("amount_usd is required when outcome is settled: say how much actually moved.", field: "amount_usd")
        }
        if outcome == "released", amount != nil {
            throw KeybrakeError.invalidRequest("amount_usd applies only to a settled outcome.", field: "amount_usd")
        }
        let result = try await db(context) {
            try await audit.resolve(tenantId: admin.tenantId, auditId: id, outcome: outcome, amount: amount, logger: context.logger)
        }
        let eventId: String
        switch result {
        case .resolved(let id): eventId = id
        case .notFound: throw KeybrakeError.notFound("audit event")
        case .refused("amount_too_large", let reserved):
            throw KeybrakeError.invalidRequest("amount_usd cannot exceed the \(MicroUSD(reserved)) that was reserved for this request.", field: "amount_usd")
        case .refused(let code, _) where code.hasPrefix("already_"):
            throw KeybrakeError(status: 409, code: .outcomeAlreadyResolved,
                                message: "This request's outcome is already \(code.dropFirst("already_".count)); it can be resolved only once.")
        case .refused:
            throw KeybrakeError(status: 409, code: .outcomeNotUnknown, message: "Only a request whose outcome is unknown (outcome_unknown) can be resolved.")
        }
        guard let created = try await db(context, { try await audit.record(tenantId: admin.tenantId, id: eventId, fromPrimary: true, logger: context.logger) }) else {
            throw KeybrakeError.internalError
        }
        struct Resolved: Encodable { let event: AuditRecord }
        return try JSONResponse.make(.created, Resolved(event: created))
    }

    // MARK: - Spend and usage

    struct SpendRow: Encodable {
        @NullEncoded var keyId: String?
        let label: String
        @NullEncoded var vendor: String?
        @NullEncoded var timezone: String?
        let keys: Int
        let settledUsd: USDAmount
        let reservedUsd: USDAmount
        let outcomeUnknownUsd: USDAmount
        let spentUsd: USDAmount
        @NullEncoded var dailyUsdCap: USDAmount?
        @NullEncoded var remainingUsd: USDAmount?
    }

    func daySpend(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let query = Self.queryDictionary(request)
        let date: String
        if let raw = query["date"], !raw.isEmpty {
            guard Self.isDate(raw) else { throw KeybrakeError.invalidRequest("date must be YYYY-MM-DD.", field: "date") }
            date = raw
        } else {
            date = Self.utcDate(clock.now())
        }
        let groupBy = query["group_by"] ?? "key"
        guard groupBy == "key" || groupBy == "label" else {
            throw KeybrakeError.invalidRequest("group_by must be key or label.", field: "group_by")
        }
        var limit = 100
        if let raw = query["limit"] {
            guard let n = Int(raw), (1...500).contains(n) else { throw KeybrakeError.invalidRequest("limit must be a whole number from 1 to 500.", field: "limit") }
            limit = n
        }
        let cursorKind = groupBy == "key" ? "s1" : "s2"
        var after: String?
        if let raw = query["cursor"], !raw.isEmpty {
            after = groupBy == "key" ? PageCursor.decode(raw, kind: cursorKind, idPrefix: "key_") : PageCursor.decodeText(raw, kind: cursorKind)
            guard after != nil else { throw KeybrakeError.invalidRequest("cursor is not a cursor returned by this endpoint for this group_by.", field: "cursor") }
        }
        // One more key (or label) than the page tells whether another page exists.
        let page: SpendRepository.Page = groupBy == "key" ? .keys(after: after, limit: limit + 1) : .labels(after: after, limit: limit + 1)
        let keys = try await db(context) { try await spend.day(tenantId: admin.tenantId, date: date, page: page, logger: context.logger) }
        var rows: [SpendRow] = []
        var nextCursor: String?
        if groupBy == "key" {
            if keys.count > limit { nextCursor = PageCursor.encode(keys[limit - 1].keyId, kind: cursorKind) }
            rows = keys.prefix(limit).map { k in
                let spent = k.settled + k.reserved + k.unknown
                return SpendRow(keyId: k.keyId, label: k.label, vendor: k.vendor, timezone: k.timezone, keys: 1,
                                settledUsd: USDAmount(k.settled), reservedUsd: USDAmount(k.reserved), outcomeUnknownUsd: USDAmount(k.unknown),
                                spentUsd: USDAmount(spent), dailyUsdCap: USDAmount(k.dailyCap),
                                remainingUsd: k.dailyCap.map { USDAmount(max(.zero, $0 - spent)) })
            }
        } else {
            let labels = LabelSpend.group(keys)
            if labels.count > limit { nextCursor = PageCursor.encode(labels[limit - 1].label, kind: cursorKind) }
            rows = labels.prefix(limit).map { l in
                SpendRow(keyId: nil, label: l.label, vendor: l.vendor, timezone: nil,
                         keys: l.keys.count, settledUsd: USDAmount(l.settled), reservedUsd: USDAmount(l.reserved),
                         outcomeUnknownUsd: USDAmount(l.unknown), spentUsd: USDAmount(l.spent), dailyUsdCap: USDAmount(l.dailyCap),
                         remainingUsd: l.dailyCap.map { USDAmount(max(.zero, $0 - l.spent)) })
            }
        }
        struct Body: Encodable { let date: String; let groupBy: String; let data: [SpendRow]; @NullEncoded var nextCursor: String? }
        return try JSONResponse.make(.ok, Body(date: date, groupBy: groupBy, data: rows, nextCursor: nextCursor))
    }

    func usage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let query = Self.queryDictionary(request)
        let utc = KeyCalendar.calendar("UTC")
        var monthStart = utc.date(from: utc.dateComponents([.year, .month], from: clock.now()))!
        if let raw = query["month"], !raw.isEmpty {
            let parts = raw.split(separator: "-")
            guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, raw.allSatisfy({ $0 == "-" || ($0.isASCII && $0.isNumber) }),
                  let y = Int(parts[0]), (1000...9999).contains(y), let m = Int(parts[1]), (1...12).contains(m),
                  let start = utc.date(from: DateComponents(year: y, month: m, day: 1)) else {
                throw KeybrakeError.invalidRequest("month must be YYYY-MM.", field: "month")
            }
            monthStart = start
        }
        let monthEnd = utc.date(byAdding: .month, value: 1, to: monthStart)!
        let month = Self.utcDate(monthStart)
        let (plan, quota) = try await db(context) { try await planQuota(admin.tenantId, context) }
        let (total, days) = try await db(context) {
            try await spend.usage(tenantId: admin.tenantId, monthStart: monthStart, monthEnd: monthEnd, month: month, logger: context.logger)
        }
        struct Day: Encodable { let date: String; let requests: Int64 }
        struct Body: Encodable {
            let month: String
            let plan: String
            let requests: Int64
            @NullEncoded var quota: Int?
            @NullEncoded var remaining: Int64?
            let days: [Day]
        }
        return try JSONResponse.make(.ok, Body(month: String(month.prefix(7)), plan: plan, requests: total, quota: quota,
                                               remaining: quota.map { max(0, Int64($0) - total) },
                                               days: days.map { Day(date: $0.0, requests: $0.1) }))
    }

    // MARK: - Helpers

    /// A real calendar date `YYYY-MM-DD` (digits only, year 1000–9999; 2026-02-30 is not one).
    static func isDate(_ s: String) -> Bool {
        let p = s.split(separator: "-", omittingEmptySubsequences: false)
        guard p.count == 3, p[0].count == 4, p[1].count == 2, p[2].count == 2, p.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let y = Int(p[0]), let m = Int(p[1]), let d = Int(p[2]), (1000...9999).contains(y) else { return false }
        let utc = KeyCalendar.calendar("UTC")
        guard let date = utc.date(from: DateComponents(year: y, month: m, day: d)) else { return false }
        let back = utc.dateComponents([.year, .month, .day], from: date)
        return back.year == y && back.month == m && back.day == d
    }

    static func utcDate(_ date: Date) -> String { KeyCalendar.utcDateString(date) }
}

/// Audit rows as CSV, one line per event, cells guarded against spreadsheet formula injection.
enum CSV {
    static var header: [String] { AuditColumns.csvHeader }

    static func render(_ rows: [AuditRecord]) -> String {
        var out = header.joined(separator: ",") + "\r\n"
        for r in rows {
            out += r.csvCells.map { escape($0 ?? "") }.joined(separator: ",") + "\r\n"
        }
        return out
    }

    /// Scalars a spreadsheet reads as the start of a formula when a cell begins with them.
    static let formulaStarts: Set<Unicode.Scalar> = ["=", "+", "-", "@", "\t", "\r", "\n"]
    /// Scalars that end a cell in some spreadsheet's reading (`;` in locales whose decimal mark is a comma).
    static let separators: Set<Unicode.Scalar> = [",", ";", "\t", "\"", "\n", "\r"]

    /// A cell as text no spreadsheet runs: the first *scalar* decides (a combining mark after `=` still starts a
    /// formula), and a cell holding any separator is quoted, so no part of it becomes a cell of its own.
    static func escape(_ value: String) -> String {
        var v = value
        if let first = v.unicodeScalars.first, formulaStarts.contains(first), Double(v) == nil { v = "'" + v }
        guard v.unicodeScalars.contains(where: { separators.contains($0) }) else { return v }
        return "\"" + v.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
