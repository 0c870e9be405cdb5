import Audit
import Foundation
import KeybrakeCore

/// A stacked bar chart of spend per bucket, drawn as SVG by the template (no JavaScript, no inline style: colours
/// are classes of the stylesheet). Every number is computed here; the template only places them, escaped.
struct SpendChart {
    struct Rect { let x: Int; let y: Int; let w: Int; let h: Int; let cls: String; let title: String }
    struct Grid { let y: Int; let ty: Int; let x1: Int; let x2: Int; let label: String }
    struct Label { let x: Int; let y: Int; let text: String }
    struct Legend { let cls: String; let label: String }

    let title: String
    let width = 760
    let height = 240
    let bars: [Rect]
    let grid: [Grid]
    let xLabels: [Label]
    let legend: [Legend]
    let total: String
    let empty: Bool
    /// The cap drawn as a line across the plot (when the key has one and it is on the scale).
    let capLine: Grid?

    static let left = 64, right = 8, top = 10, bottom = 28
    /// Colours for the eight largest groups; the rest are drawn together as "other".
    static let maxGroups = 8

    /// `buckets` in order (every one is drawn, empty or not); points grouped by `group`, labelled by `label`.
    init(title: String, buckets: [String], points: [SpendSeries.Point], bucketLabel: (String) -> String,
         cap: MicroUSD? = nil, capName: String = "cap") {
        self.title = title
        var byGroup: [String: Int64] = [:]
        var names: [String: String] = [:]
        for p in points { byGroup[p.group, default: 0] += p.spent.micros; names[p.group] = p.label }
        let ranked = byGroup.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key)
        let shown = Array(ranked.prefix(Self.maxGroups - (ranked.count > Self.maxGroups ? 1 : 0)))
        let other = ranked.count > shown.count
        func slot(_ group: String) -> Int { shown.firstIndex(of: group) ?? shown.count }
        var cells: [String: [Int: Int64]] = [:]
        for p in points { cells[p.bucket, default: [:]][slot(p.group), default: 0] += p.spent.micros }
        let maxTotal = buckets.map { b in cells[b]?.values.reduce(0, +) ?? 0 }.max() ?? 0
        let scale = Self.niceCeiling(max(maxTotal, cap?.micros ?? 0))
        let plotW = width - Self.left - Self.right, plotH = height - Self.top - Self.bottom
        let step = buckets.isEmpty ? plotW : plotW / buckets.count
        let barW = max(2, step * 3 / 4)
        var rects: [Rect] = []
        for (i, b) in buckets.enumerated() {
            var y = Self.top + plotH
            for s in 0...shown.count {
                guard let v = cells[b]?[s], v > 0, scale > 0 else { continue }
                let h = max(1, Int((Double(v) / Double(scale) * Double(plotH)).rounded()))
                y -= h
                let name = s < shown.count ? names[shown[s]] ?? shown[s] : "other"
                rects.append(Rect(x: Self.left + i * step + (step - barW) / 2, y: y, w: barW, h: h, cls: "c\(s)",
                                  title: "\(bucketLabel(b)) · \(name): \(MicroUSD(v))"))
            }
        }
        bars = rects
        grid = (0...4).map { k in
            let y = Self.top + plotH - plotH * k / 4
            return Grid(y: y, ty: y + 4, x1: Self.left, x2: Self.left + plotW, label: Format.usd(MicroUSD(scale * Int64(k) / 4)))
        }
        let every = max(1, buckets.count / 6)
        xLabels = buckets.enumerated().compactMap { i, b in
            i % every == 0 ? Label(x: Self.left + i * step + step / 2, y: Self.top + plotH + 18, text: bucketLabel(b)) : nil
        }
        legend = shown.enumerated().map { Legend(cls: "c\($0.offset)", label: names[$0.element] ?? $0.element) }
            + (other ? [Legend(cls: "c\(shown.count)", label: "other")] : [])
        total = Format.usd(MicroUSD(points.reduce(0) { $0 + $1.spent.micros }))
        capLine = cap.flatMap { c in
            guard scale > 0 else { return nil }
            let y = Self.top + plotH - Int((Double(c.micros) / Double(scale) * Double(plotH)).rounded())
            return Grid(y: y, ty: y - 4, x1: Self.left, x2: Self.left + plotW, label: "\(capName) \(Format.usd(c))")
        }
        empty = points.isEmpty
    }

    /// The smallest 1, 2 or 5 × 10ⁿ micro-dollars (at least $1) at or above `v`.
    static func niceCeiling(_ v: Int64) -> Int64 {
        var unit: Int64 = 1_000_000
        while true {
            for m in [1, 2, 5] as [Int64] where unit * m >= v { return unit * m }
            unit *= 10
        }
    }

    /// The `count` calendar days ending with `last` (YYYY-MM-DD), oldest first.
    static func days(endingWith last: String, count: Int) -> [String] {
        let utc = KeyCalendar.calendar("UTC")
        guard let end = RFC3339Dates.parseDay(last) else { return [last] }
        return (0..<count).reversed().compactMap { utc.date(byAdding: .day, value: -$0, to: end).map(KeyCalendar.utcDateString) }
    }
}

enum RFC3339Dates {
    static func parseDay(_ day: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withFullDate]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.date(from: day)
    }
}
