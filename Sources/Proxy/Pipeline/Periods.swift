import Foundation
import KeybrakeCore
import Storage

// The key's day and month in its own time zone (caps), and the UTC month (metering).
// TODO(structure): one calendar in KeybrakeCore, shared with the audit API and the dashboard.
typealias Periods = ProxyPipeline.Periods

extension ProxyPipeline {
    struct Periods: Sendable {
        var day: String
        var month: String
        var dayEnd: Date
        var monthEnd: Date
        var utcMonth: String
        var utcMonthEnd: Date
    }

    /// Gregorian calendars per time zone: building one (ICU) costs far more than using it, so build each once.
    static let calendars = ExpiringCache<String, Calendar>(ttl: .seconds(3600), capacity: 1000)

    static func calendar(_ timezone: String) -> Calendar {
        if let cached = calendars.get(timezone) { return cached }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: timezone) ?? TimeZone(identifier: "UTC")!
        calendars.set(timezone, calendar)
        return calendar
    }

    /// The key's current day and month in its own time zone, and the UTC month for metering. Calendar arithmetic
    /// shows up in the request profile, and the answer only changes at midnight: each time zone's answer is kept
    /// for as long as it holds.
    static func periods(now: Date, timezone: String) -> Periods {
        if let cached = periodCache.get(timezone), now >= cached.validFrom, now < cached.validUntil { return cached.periods }
        let calendar = Self.calendar(timezone)
        let dayStart = calendar.startOfDay(for: now)
        let monthStart = calendar.date(from: calendar.dateComponents([.year, .month], from: now)) ?? dayStart
        let utc = Self.calendar("UTC")
        let utcMonthStart = utc.date(from: utc.dateComponents([.year, .month], from: now)) ?? now
        let periods = Periods(
            day: dateString(dayStart, calendar), month: dateString(monthStart, calendar),
            dayEnd: calendar.date(byAdding: .day, value: 1, to: dayStart) ?? now,
            monthEnd: calendar.date(byAdding: .month, value: 1, to: monthStart) ?? now,
            utcMonth: dateString(utcMonthStart, utc),
            utcMonthEnd: utc.date(byAdding: .month, value: 1, to: utcMonthStart) ?? now
        )
        periodCache.set(timezone, .init(periods: periods, validFrom: max(dayStart, utcMonthStart),
                                        validUntil: min(periods.dayEnd, periods.utcMonthEnd)))
        return periods
    }

    struct CachedPeriods: Sendable {
        var periods: Periods
        var validFrom: Date
        var validUntil: Date
    }

    static let periodCache = ExpiringCache<String, CachedPeriods>(ttl: .seconds(3600), capacity: 1000)

    static func dateString(_ date: Date, _ calendar: Calendar) -> String {
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        func pad(_ n: Int, _ width: Int) -> String {
            let digits = String(n)
            return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
        }
        return pad(c.year ?? 1970, 4) + "-" + pad(c.month ?? 1, 2) + "-" + pad(c.day ?? 1, 2)
    }

}
