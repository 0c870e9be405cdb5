import Foundation
import KeybrakeCore
import Mustache

/// One row of a spend table (a key, a label, or a key's day/month).
struct SpendRow {
    var keyId: String = ""
    var href: String = ""
    var label: String = ""
    var name: String = ""
    var start: String = ""
    var vendor: String = ""
    var status: String = ""
    var inactive = false
    var keyCount: Int = 1
    let spent: String
    let settled: String
    let reserved: String
    let unknown: String
    let capText: String
    let percent: String?
    let nearCap: Bool
    let atCap: Bool
    let rowClass: String
    let bar: Bar
    /// Sort key: fraction of the cap used (uncapped rows sort after capped ones with spend).
    let ratio: Double
    let spentMicros: Int64

    init(settled: MicroUSD, reserved: MicroUSD, unknown: MicroUSD, cap: MicroUSD?, uncappedScale: MicroUSD) {
        let total = settled + reserved + unknown
        spentMicros = total.micros
        spent = Format.usd(total)
        self.settled = Format.usd(settled)
        self.reserved = Format.usd(reserved)
        self.unknown = Format.usd(unknown)
        capText = cap.map(Format.usd) ?? "no cap"
        // "At cap" is 100% (nothing more can be reserved); an uncapped row has no fill and sorts last.
        let meter = cap.flatMap { $0.micros > 0 ? Meter(ratio: Double(total.micros) / Double($0.micros)) : nil }
        ratio = meter?.ratio ?? -1
        percent = meter?.percent
        atCap = meter?.reached ?? false
        nearCap = meter?.near ?? false
        rowClass = meter?.rowClass ?? ""
        bar = Bar(settled: settled, reserved: reserved, unknown: unknown, cap: cap, uncappedScale: uncappedScale)
    }

    /// The order of the spend tables: fullest against its cap first, then most spent, then by label.
    static func fullestFirst(_ a: SpendRow, _ b: SpendRow) -> Bool {
        if a.ratio != b.ratio { return a.ratio > b.ratio }
        if a.spentMicros != b.spentMicros { return a.spentMicros > b.spentMicros }
        return a.label < b.label
    }
}

struct UsageView {
    let month: String
    let plan: String
    let requests: String
    let quota: String?
    let hasQuota: Bool
    let percent: String
    let nearQuota: Bool
    let rowClass: String
    let bar: Bar?
}

struct OverviewView {
    let chrome: Chrome
    let flash: Flash?
    let usage: UsageView
    let date: String
    let chart: Chart
    let nearKeys: String?
    let keyRows: [SpendRow]
    let moreKeys: String?
    let labelRows: [SpendRow]
}
