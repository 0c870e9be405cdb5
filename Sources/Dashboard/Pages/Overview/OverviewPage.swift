import Audit
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Tenants

extension DashboardController {
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
        let chart = try await spendChart(tenantId: session.tenantId, now: now, context: context)

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
        keyRows.sort(by: SpendRow.fullestFirst)
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
        labelRows.sort(by: SpendRow.fullestFirst)
        labelRows = Array(labelRows.prefix(Self.overviewMaxRows))

        // This UTC month's proxied requests against the plan's quota.
        let used = try await usedRequests
        let plan = Plan(rawValue: session.tenantPlan) ?? .free
        let quota = tenantsConfiguration.monthlyQuota(for: plan).map(Int64.init)
        let meter = Meter(ratio: quota.map { $0 > 0 ? Double(used) / Double($0) : 1 } ?? 0)
        let usage = UsageView(
            month: month, plan: plan.rawValue, requests: Format.count(used), quota: quota.map(Format.count),
            hasQuota: quota != nil, percent: meter.percent, nearQuota: quota != nil && (meter.near || meter.reached),
            rowClass: meter.rowClass, bar: quota.map { Bar(used: used, of: $0) }
        )
        return renderer.render("overview", OverviewView(
            chrome: chrome, flash: notice(request), usage: usage, date: utcToday, chart: chart,
            nearKeys: near == 0 ? nil : (near == 1 ? "1 key is near or at its daily cap." : "\(near) keys are near or at their daily cap."),
            keyRows: keyRows, moreKeys: hidden == 0 ? nil : "\(hidden) more keys are not shown.", labelRows: labelRows
        ))
    }

    /// The last 30 days, per day (each key's own day), stacked by label.
    func spendChart(tenantId: String, now: Date, context: KeybrakeRequestContext) async throws -> Chart {
        let utc = KeyCalendar.calendar("UTC")
        let buckets = Chart.days(endingAt: now, count: 30, calendar: utc)
        let from = utc.date(byAdding: .day, value: -31, to: utc.startOfDay(for: now))!
        let to = utc.date(byAdding: .day, value: 2, to: utc.startOfDay(for: now))!
        let rows = try await db(context) {
            try await SpendSeriesRepository(spend: spend).series(
                tenantId: tenantId, keyId: nil, granularity: .day, grouping: .label, timezone: "UTC", from: from, to: to,
                fromDay: buckets.first?.key ?? "", toDay: KeyCalendar.dateString(to, utc), logger: context.logger)
        }
        var stacks: [String: [String: MicroUSD]] = [:]
        for r in rows { stacks[r.group, default: [:]][r.bucket, default: .zero] = stacks[r.group, default: [:]][r.bucket, default: .zero] + r.spent }
        return Chart(id: "spend-chart", title: "Spend per day by label, last 30 days", buckets: buckets,
                     stacks: stacks.map { (name: $0.key, amounts: $0.value) }.sorted { $0.name < $1.name })
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
}
