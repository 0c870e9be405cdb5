import Foundation
import KeybrakeCore

/// Minor-unit exponents as Stripe uses them: an amount of 500 JPY is ¥500, of 500 USD is $5.00,
/// of 500 KWD is 0.500 KD.
public enum CurrencyExponent {
    static let zeroDecimal: Set<String> = [
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
    ]
    static let threeDecimal: Set<String> = ["bhd", "jod", "kwd", "omr", "tnd"]

    public static func exponent(_ code: String) -> Int {
        let c = code.lowercased()
        if zeroDecimal.contains(c) { return 0 }
        if threeDecimal.contains(c) { return 3 }
        return 2
    }
}

/// Micro-USD per one major unit of each currency, keyed by lower-case ISO code.
public struct FXTable: Sendable, Equatable {
    public private(set) var rates: [String: Int64]

    /// Static reference rates (approximate, mid-2025), good enough to enforce a spend cap but not
    /// for accounting. Operators override or extend them with `KEYBRAKE_FX_RATES`; a currency in
    /// neither is refused rather than guessed.
    public static let defaultRates: [String: Int64] = [
        "usd": 1_000_000,
        "eur": 1_170_000, "gbp": 1_350_000, "chf": 1_250_000, "cad": 730_000, "aud": 660_000,
        "nzd": 600_000, "jpy": 6_800, "krw": 720, "cny": 140_000, "hkd": 128_000, "sgd": 780_000,
        "inr": 11_500, "sek": 105_000, "nok": 99_000, "dkk": 157_000, "pln": 275_000, "czk": 47_000,
        "mxn": 54_000, "brl": 185_000, "clp": 1_050, "zar": 57_000, "aed": 272_300, "ils": 300_000,
        "kwd": 3_280_000, "bhd": 2_660_000, "omr": 2_600_000, "jod": 1_410_000,
    ]

    public static let `default` = FXTable(rates: defaultRates)

    /// Keys are matched case-insensitively; USD is always exactly 1_000_000; a rate ≤ 0 is dropped
    /// (the currency is then refused) rather than pricing money at nothing.
    public init(rates: [String: Int64]) {
        var lowered: [String: Int64] = [:]
        for (code, rate) in rates where rate > 0 { lowered[code.lowercased()] = rate }
        lowered["usd"] = MicroUSD.perDollar
        self.rates = lowered
    }

    /// Reads `eur=1.08,gbp=1.27` (USD per major unit, up to six decimals) on top of `base`.
    public init(parsing config: String, base: FXTable = .default) throws(KeybrakeError) {
        var rates = base.rates
        for entry in config.split(separator: ",") {
            let trimmed = entry.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            let parts = trimmed.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else {
                throw Self.configError("`\(trimmed)` is not `code=usd_per_unit` (e.g. `eur=1.08`).")
            }
            let code = parts[0].lowercased()
            guard code.count == 3, code.allSatisfy({ $0.isASCII && $0.isLetter }) else {
                throw Self.configError("`\(parts[0])` is not a three-letter ISO currency code.")
            }
            guard let rate = MicroUSD.parse(dollars: parts[1], maxDecimals: 6), rate.micros > 0 else {
                throw Self.configError("the rate for \(code.uppercased()) must be a positive number of USD with at most 6 decimals, got `\(parts[1])`.")
            }
            guard code != "usd" || rate.micros == MicroUSD.perDollar else {
                throw Self.configError("USD is the base currency; its rate is always 1.")
            }
            rates[code] = rate.micros
        }
        self.init(rates: rates)
    }

    private static func configError(_ detail: String) -> KeybrakeError {
        .invalidRequest("KEYBRAKE_FX_RATES: \(detail)", field: "KEYBRAKE_FX_RATES")
    }

    /// Converts an amount in the currency's minor units to micro-USD, rounding up so that spend is
    /// never under-counted.
    public func microUSD(amountMinor: Int64, currency: String) throws(KeybrakeError) -> MicroUSD {
        guard amountMinor >= 0 else {
            throw .invalidRequest("amount must not be negative, got \(amountMinor).", field: "amount")
        }
        let code = currency.lowercased()
        guard let rate = rates[code] else {
            throw KeybrakeError(
                status: 400, code: .currencyNotSupported,
                message: "Keybrake has no exchange rate for currency `\(currency)`, so it cannot check this request against the key's USD caps. Ask the operator to add it to KEYBRAKE_FX_RATES (e.g. `\(code)=<USD per 1 \(code.uppercased())>`).",
                field: "currency"
            )
        }
        var divisor: UInt64 = 1
        for _ in 0..<CurrencyExponent.exponent(code) { divisor *= 10 }
        let product = UInt64(amountMinor).multipliedFullWidth(by: UInt64(rate))
        // dividingFullWidth traps if the quotient doesn't fit; high < divisor guarantees it does.
        guard product.high < divisor else { throw Self.tooLarge(amountMinor, currency) }
        let (quotient, remainder) = divisor.dividingFullWidth(product)
        let (rounded, overflow) = quotient.addingReportingOverflow(remainder > 0 ? 1 : 0)
        guard !overflow, rounded <= UInt64(Int64.max) else { throw Self.tooLarge(amountMinor, currency) }
        return MicroUSD(Int64(rounded))
    }

    private static func tooLarge(_ amount: Int64, _ currency: String) -> KeybrakeError {
        .invalidRequest("amount \(amount) \(currency.uppercased()) is too large to price.", field: "amount")
    }
}
