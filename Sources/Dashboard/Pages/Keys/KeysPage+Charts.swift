import Audit
import Foundation
import HTTPLayer
import KeybrakeCore
import Keys

extension DashboardController {
    /// A key's page: today by hour and the last 30 days by day, in its time zone, stacked by what became of the money
    /// (settled, reserved, outcome unknown); the daily cap drawn across the daily chart.
    func keyCharts(_ key: VaultKey, now: Date, context: KeybrakeRequestContext) async throws -> (hours: ChartBox, days: ChartBox) {
        let tz = key.policy.timezone
        let calendar = KeyCalendar.calendar(tz)
        let series = SpendSeriesRepository(spend: spend)
        let today = calendar.startOfDay(for: now)
        let tomorrow = calendar.date(byAdding: .day, value: 1, to: today)!
        let utc = KeyCalendar.calendar("UTC")
        let hourRows = try await db(context) {
            try await series.series(tenantId: key.tenantId, keyId: key.id, granularity: .hour, grouping: .none, timezone: tz, from: today, to: tomorrow,
                                    fromDay: KeyCalendar.dateString(utc.date(byAdding: .day, value: -1, to: today)!, utc),
                                    toDay: KeyCalendar.dateString(utc.date(byAdding: .day, value: 2, to: tomorrow)!, utc), logger: context.logger)
        }
        let days = Chart.days(endingAt: now, count: 30, calendar: calendar)
        let dayRows = try await db(context) {
            try await series.series(tenantId: key.tenantId, keyId: key.id, granularity: .day, grouping: .none, timezone: tz,
                                    from: calendar.date(byAdding: .day, value: -29, to: today)!, to: tomorrow,
                                    fromDay: days.first?.key ?? "", toDay: KeyCalendar.dateString(tomorrow, calendar), logger: context.logger)
        }
        func stacks(_ rows: [SpendSeriesRepository.Row]) -> [(name: String, amounts: [String: MicroUSD])] {
            [("settled", Dictionary(rows.map { ($0.bucket, $0.settled) }, uniquingKeysWith: +)),
             ("reserved", Dictionary(rows.map { ($0.bucket, $0.reserved) }, uniquingKeysWith: +)),
             ("outcome unknown", Dictionary(rows.map { ($0.bucket, $0.unknown) }, uniquingKeysWith: +))]
        }
        let caps = key.policy.dailyCap.map { [(name: "daily cap", amount: $0)] } ?? []
        return (ChartBox(chart: Chart(id: "key-hours-chart", title: "Spend per hour today (\(tz))", buckets: Chart.hours(of: now, calendar: calendar),
                                      stacks: stacks(hourRows), states: true)),
                ChartBox(chart: Chart(id: "key-days-chart", title: "Spend per day, last 30 days (\(tz))", buckets: days,
                                      stacks: stacks(dayRows), caps: caps, states: true)))
    }
}
