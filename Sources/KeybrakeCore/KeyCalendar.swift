import Foundation

/// A key's current day and month in its own IANA time zone (what its daily and monthly caps count against), and
/// the UTC month a request is metered in. Dates are `YYYY-MM-DD` (a month is its first day).
public struct KeyPeriods: Sendable, Equatable {
    public var day: String
    public var month: String
    public var dayEnd: Date
    public var monthEnd: Date
    public var utcMonth: String
    public var utcMonthEnd: Date

    public init(day: String, month: String, dayEnd: Date, monthEnd: Date, utcMonth: String, utcMonthEnd: Date) {
        self.day = day
        self.month = month
        self.dayEnd = dayEnd
        self.monthEnd = monthEnd
        self.utcMonth = utcMonth
        self.utcMonthEnd = utcMonthEnd
    }
}

/// The one calendar of Keybrake: the proxy's caps, the key spend API, the dashboard and metering all ask it.
/// An unknown time zone counts as UTC.
public enum KeyCalendar {
    /// The key's current day and month in its own time zone, and the UTC month for metering. Calendar arithmetic
    /// shows up in the request profile, and the answer only changes at midnight: each time zone's answer is kept
    /// for as long as it holds.
    public static func periods(now: Date, timezone: String) -> KeyPeriods {
        if let cached = periodCache.get(timezone), now >= cached.validFrom, now < cached.validUntil { return cached.periods }
        let calendar = Self.calendar(timezone)
        let dayStart = calendar.startOfDay(for: now)
        let monthStart = calendar.date(from: calendar.dateComponents([.year, .month], from: now)) ?? dayStart
        let utc = Self.calendar("UTC")
        let utcMonthStart = utc.date(from: utc.dateComponents([.year, .month], from: now)) ?? now
        let periods = KeyPeriods(
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

    /// A Gregorian calendar in `timezone` (UTC if unknown). Building one (ICU) costs far more than using it, so
    /// each time zone's is built once.
    public static func calendar(_ timezone: String) -> Calendar {
        if let cached = calendars.get(timezone) { return cached }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: timezone) ?? TimeZone(identifier: "UTC")!
        calendars.set(timezone, calendar)
        return calendar
    }

    /// `date`'s day in `calendar`, `YYYY-MM-DD` (no Foundation formatter: this runs per request).
    public static func dateString(_ date: Date, _ calendar: Calendar) -> String {
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        func pad(_ n: Int, _ width: Int) -> String {
            let digits = String(n)
            return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
        }
        return pad(c.year ?? 1970, 4) + "-" + pad(c.month ?? 1, 2) + "-" + pad(c.day ?? 1, 2)
    }

    /// `date`'s UTC day, `YYYY-MM-DD`.
    public static func utcDateString(_ date: Date) -> String { dateString(date, calendar("UTC")) }

    struct CachedPeriods: Sendable {
        var periods: KeyPeriods
        var validFrom: Date
        var validUntil: Date
    }

    static let calendars = TimedCache<String, Calendar>(ttl: .seconds(3600), capacity: 1000)
    static let periodCache = TimedCache<String, CachedPeriods>(ttl: .seconds(3600), capacity: 1000)
}

/// The same small expiring cache as Storage's `ExpiringCache`, kept here so KeybrakeCore depends on Foundation only.
final class TimedCache<Key: Hashable & Sendable, Value: Sendable>: @unchecked Sendable {
    struct Entry { var value: Value; var expires: ContinuousClock.Instant }
    let ttl: Duration
    let capacity: Int
    private let lock = NSLock()
    private var entries: [Key: Entry] = [:]   // guarded by `lock`

    init(ttl: Duration, capacity: Int) {
        self.ttl = ttl
        self.capacity = capacity
    }

    func get(_ key: Key) -> Value? {
        let now = ContinuousClock.now
        return lock.withLock {
            guard let entry = entries[key], entry.expires > now else { return nil }
            return entry.value
        }
    }

    func set(_ key: Key, _ value: Value) {
        let now = ContinuousClock.now
        lock.withLock {
            if entries.count >= capacity { entries = entries.filter { $0.value.expires > now } }
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[key] = Entry(value: value, expires: now + ttl)
        }
    }
}
