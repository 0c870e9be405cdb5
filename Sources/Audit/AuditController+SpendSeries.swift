import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage

/// GET /v1/spend/series (JSON, or CSV with `Accept: text/csv`).
extension AuditController {
    /// At most this many buckets per request: a year of days, a month of hours.
    static let maxDays = 366
    static let maxHours = 31 * 24

    struct SeriesRow: Encodable {
        let bucket: String
        let group: String
        let settledUsd: USDAmount
        let reservedUsd: USDAmount
        let outcomeUnknownUsd: USDAmount
        let spentUsd: USDAmount
    }

    func spendSeries(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let admin = try context.requireAdmin()
        let query = Self.queryDictionary(request)
        guard let granularity = SpendSeriesRepository.Granularity(rawValue: query["granularity"] ?? "day") else {
            throw KeybrakeError.invalidRequest("granularity must be hour or day.", field: "granularity")
        }
        guard let grouping = SpendSeriesRepository.Grouping(rawValue: query["group_by"] ?? "none") else {
            throw KeybrakeError.invalidRequest("group_by must be key, label or vendor (or absent for the total).", field: "group_by")
        }
        let repository = SpendSeriesRepository(reads: spend.reads)
        var keyId: String?
        var timezone = "UTC"
        if let raw = query["key_id"], !raw.isEmpty {
            guard raw.count <= 100 else { throw KeybrakeError.invalidRequest("key_id is too long.", field: "key_id") }
            guard let tz = try await db(context, { try await repository.timezone(keyId: raw, tenantId: admin.tenantId, logger: context.logger) }) else {
                throw KeybrakeError.notFound("key")
            }
            keyId = raw
            timezone = tz
        }
        let calendar = KeyCalendar.calendar(timezone)
        let now = clock.now()
        // Defaults: the last 30 days (today included), or the last 24 hours (this hour included).
        let (defaultFrom, defaultTo): (Date, Date) = {
            switch granularity {
            case .day:
                let tomorrow = calendar.date(byAdding: .day, value: 1, to: calendar.startOfDay(for: now))!
                return (calendar.date(byAdding: .day, value: -30, to: tomorrow)!, tomorrow)
            case .hour:
                let hour = calendar.dateInterval(of: .hour, for: now)!.end
                return (hour.addingTimeInterval(-24 * 3600), hour)
            }
        }()
        let from = try Self.seriesTime(query["from"], field: "from", calendar: calendar) ?? defaultFrom
        let to = try Self.seriesTime(query["to"], field: "to", calendar: calendar) ?? defaultTo
        guard from < to else { throw KeybrakeError.invalidRequest("to must be after from.", field: "to") }
        let span = to.timeIntervalSince(from)
        if granularity == .day, span > Double(Self.maxDays) * 86_400 + 7200 {
            throw KeybrakeError.invalidRequest("A daily series covers at most \(Self.maxDays) days; narrow from/to.", field: "from")
        }
        if granularity == .hour, span > Double(Self.maxHours) * 3600 {
            throw KeybrakeError.invalidRequest("An hourly series covers at most \(Self.maxHours / 24) days; narrow from/to.", field: "from")
        }
        // Days read: each key's own day, so a day on either side covers every time zone.
        let utc = KeyCalendar.calendar("UTC")
        let fromDay = KeyCalendar.dateString(granularity == .day ? from : utc.date(byAdding: .day, value: -1, to: from)!, granularity == .day ? calendar : utc)
        let toDay = KeyCalendar.dateString(granularity == .day ? to : utc.date(byAdding: .day, value: 2, to: to)!, granularity == .day ? calendar : utc)
        let rows = try await db(context) {
            try await repository.series(tenantId: admin.tenantId, keyId: keyId, granularity: granularity, grouping: grouping, timezone: timezone,
                                        from: from, to: to, fromDay: fromDay, toDay: toDay, logger: context.logger)
        }
        if let accept = request.headers[.accept], accept.contains("text/csv") {
            var csv = "bucket,group,settled_usd,reserved_usd,outcome_unknown_usd,spent_usd\r\n"
            for r in rows {
                csv += [r.bucket, Self.csvField(r.group), r.settled.dollarString, r.reserved.dollarString, r.unknown.dollarString, r.spent.dollarString]
                    .joined(separator: ",") + "\r\n"
            }
            let headers: HTTPFields = [.contentType: "text/csv; charset=utf-8",
                                       .contentDisposition: "attachment; filename=\"keybrake-spend-\(granularity.rawValue).csv\""]
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: csv)))
        }
        struct Body: Encodable {
            let granularity: String
            let groupBy: String
            @NullEncoded var keyId: String?
            let timezone: String
            let from: Date
            let to: Date
            let data: [SeriesRow]
        }
        return try JSONResponse.make(.ok, Body(
            granularity: granularity.rawValue, groupBy: grouping.rawValue, keyId: keyId, timezone: timezone,
            from: from, to: to,
            data: rows.map { SeriesRow(bucket: $0.bucket, group: $0.group, settledUsd: USDAmount($0.settled), reservedUsd: USDAmount($0.reserved),
                                       outcomeUnknownUsd: USDAmount($0.unknown), spentUsd: USDAmount($0.spent)) }))
    }

    /// `YYYY-MM-DD` (midnight in the series' time zone) or an RFC 3339 timestamp.
    static func seriesTime(_ raw: String?, field: String, calendar: Calendar) throws(KeybrakeError) -> Date? {
        guard let raw, !raw.isEmpty else { return nil }
        if isDate(raw) {
            let p = raw.split(separator: "-").compactMap { Int($0) }
            if let d = calendar.date(from: DateComponents(year: p[0], month: p[1], day: p[2])) { return d }
        }
        guard let d = RFC3339.parse(raw) else {
            throw .invalidRequest("\(field) must be a date (YYYY-MM-DD) or an RFC 3339 timestamp.", field: field)
        }
        return d
    }

    /// A CSV field: quoted when it holds a comma, quote or line break; a leading =, +, -, @ is defused for spreadsheets.
    static func csvField(_ s: String) -> String {
        var v = s
        if let first = v.first, "=+-@".contains(first) { v = "'" + v }
        guard v.contains(where: { ",\"\n\r".contains($0) }) else { return v }
        return "\"" + v.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
