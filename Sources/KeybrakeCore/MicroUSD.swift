/// Money as an integer number of micro-dollars (1 USD = 1_000_000).
/// Every internal amount is one of these; floating point never touches money.
public struct MicroUSD: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public static let perDollar: Int64 = 1_000_000
    public static let zero = MicroUSD(0)

    public var micros: Int64

    public init(_ micros: Int64) { self.micros = micros }

    public static func dollars(_ whole: Int64) -> MicroUSD { MicroUSD(whole * perDollar) }

    public static func < (lhs: MicroUSD, rhs: MicroUSD) -> Bool { lhs.micros < rhs.micros }
    public static func + (lhs: MicroUSD, rhs: MicroUSD) -> MicroUSD { MicroUSD(lhs.micros + rhs.micros) }
    public static func - (lhs: MicroUSD, rhs: MicroUSD) -> MicroUSD { MicroUSD(lhs.micros - rhs.micros) }

    /// Parses a decimal dollar amount ("12", "12.5", "0.0083", "1e2") exactly.
    /// Returns nil for malformed input, more than `maxDecimals` fractional digits,
    /// or values that overflow. Negative amounts are allowed only if `allowNegative`.
    public static func parse(dollars text: String, maxDecimals: Int = 6, allowNegative: Bool = false) -> MicroUSD? {
        guard let decimal = ExactDecimal(parsing: text) else { return nil }
        if decimal.negative && !allowNegative && decimal.digits.contains(where: { $0 != 0 }) { return nil }
        // Fraction digits beyond maxDecimals must all be zero ("1.50" is fine for 1 decimal).
        let significantFraction = decimal.fractionDigitCount(ignoringTrailingZeros: true)
        guard significantFraction <= maxDecimals else { return nil }
        guard let micros = decimal.scaled(by: 6) else { return nil }
        return MicroUSD(micros)
    }

    /// Decimal dollars with up to six fractional digits, trailing zeros trimmed to two ("12.50", "0.0083").
    public var dollarString: String {
        let negative = micros < 0
        let magnitude = micros.magnitude
        let whole = magnitude / UInt64(MicroUSD.perDollar)
        var fraction = String(magnitude % UInt64(MicroUSD.perDollar))
        fraction = String(repeating: "0", count: 6 - fraction.count) + fraction
        while fraction.count > 2 && fraction.hasSuffix("0") { fraction.removeLast() }
        return (negative ? "-" : "") + "\(whole).\(fraction)"
    }

    public var description: String { "$" + dollarString }
}

/// A base-10 number read digit by digit, so "0.29" stays exactly 29/100.
struct ExactDecimal {
    var negative: Bool
    /// All significant digits, most significant first.
    var digits: [UInt8]
    /// Value = digits × 10^exponent.
    var exponent: Int

    init?(parsing raw: String) {
        var text = Substring(raw.trimmingWhitespace())
        guard !text.isEmpty else { return nil }
        negative = false
        if text.first == "-" || text.first == "+" {
            negative = text.first == "-"
            text = text.dropFirst()
        }
        var exp = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            guard let parsed = Int(text[text.index(after: e)...]), abs(parsed) < 64 else { return nil }
            exp = parsed
            text = text[..<e]
        }
        var ds: [UInt8] = []
        var seenDot = false
        var fractionCount = 0
        for ch in text {
            if ch == "." {
                guard !seenDot else { return nil }
                seenDot = true
                continue
            }
            guard let v = ch.asciiValue, v >= 48, v <= 57 else { return nil }
            ds.append(v - 48)
            if seenDot { fractionCount += 1 }
        }
        guard !ds.isEmpty, ds.count <= 40 else { return nil }
        digits = ds
        exponent = exp - fractionCount
    }

    func fractionDigitCount(ignoringTrailingZeros: Bool) -> Int {
        var ds = digits
        var exp = exponent
        if ignoringTrailingZeros {
            while exp < 0, ds.last == 0 { ds.removeLast(); exp += 1 }
        }
        return max(0, -exp)
    }

    /// The value × 10^places as an Int64; nil on overflow or if that would drop a non-zero digit.
    func scaled(by places: Int) -> Int64? {
        var ds = digits
        var exp = exponent + places
        // Digits below the unit must be zeros, or precision would be lost.
        while exp < 0 {
            guard let last = ds.last else { break }
            guard last == 0 else { return nil }
            ds.removeLast()
            exp += 1
        }
        if ds.isEmpty { return 0 }
        var value: Int64 = 0
        for d in ds {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(d))
            guard !o1, !o2 else { return nil }
            value = a
        }
        if exp > 0 {
            for _ in 0..<exp {
                let (m, o) = value.multipliedReportingOverflow(by: 10)
                guard !o else { return nil }
                value = m
            }
        }
        return negative ? -value : value
    }
}

extension StringProtocol {
    /// Without whitespace at either end.
    public func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
