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

    /// "Near" is 80% of the cap; "at cap" is 100% (nothing more can be reserved).
    static let nearThreshold = 0.8

    init(settled: MicroUSD, reserved: MicroUSD, unknown: MicroUSD, cap: MicroUSD?, uncappedScale: MicroUSD) {
        let total = settled + reserved + unknown
        spentMicros = total.micros
        spent = Format.usd(total)
        self.settled = Format.usd(settled)
        self.reserved = Format.usd(reserved)
        self.unknown = Format.usd(unknown)
        capText = cap.map(Format.usd) ?? "no cap"
        if let cap, cap.micros > 0 {
            let r = Double(total.micros) / Double(cap.micros)
            ratio = r
            percent = String(format: "%.0f%%", (r * 100).rounded(.down))
            atCap = r >= 1
            nearCap = !atCap && r >= Self.nearThreshold
        } else {
            ratio = -1
            percent = nil
            atCap = false
            nearCap = false
        }
        rowClass = atCap ? "over" : (nearCap ? "near" : "")
        bar = Bar(settled: settled, reserved: reserved, unknown: unknown, cap: cap, uncappedScale: uncappedScale)
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
