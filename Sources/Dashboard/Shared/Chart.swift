import Foundation
import KeybrakeCore

/// A stacked bar chart for server-rendered SVG (DESIGN §14: no JavaScript needed): one bar per bucket, one colour per
/// stack, cap lines across. Coordinates are SVG units of a 720 × 220 view box; every text reaches the page through
/// `{{ }}` (the `chart` partial), so labels a tenant chose are escaped like everywhere else.
struct Chart {
    struct Rect { let x: Int; let y: Int; let w: Int; let h: Int; let series: String; let usd: String; let title: String }
    struct Tick { let x: Int; let y: Int; let text: String }
    struct Line { let y: Int; let labelY: Int; let text: String }
    struct Legend { let name: String; let series: String }

    let id: String
    let label: String
    let rects: [Rect]
    let xTicks: [Tick]
    let yTicks: [Tick]
    let lines: [Line]
    let legend: [Legend]
    let empty: Bool

    static let width = 720, height = 220, left = 64, right = 8, top = 10, bottom = 24
    /// Stacks beyond this many are summed as "other".
    static let maxStacks = 6

    /// `buckets`: (key as the series rows name it, label under the axis or nil); `stacks`: name → amount per bucket key.
    /// `states`: the stacks are settled / reserved / outcome unknown, drawn in that order in the spend bars' colours;
    /// otherwise (labels) the biggest come first, each in a colour of its own.
    init(id: String, title: String, buckets: [(key: String, tick: String?)], stacks: [(name: String, amounts: [String: MicroUSD])],
         caps: [(name: String, amount: MicroUSD)] = [], states: Bool = false) {
        self.id = id
        // The biggest stacks keep their colour; the rest become "other".
        var ordered = (states ? stacks : stacks.sorted { $0.amounts.values.reduce(.zero, +) > $1.amounts.values.reduce(.zero, +) })
            .filter { $0.amounts.values.contains { $0.micros > 0 } }
        let stateClass = ["settled": "settled", "reserved": "reserved", "outcome unknown": "unknown"]
        func cls(_ index: Int, _ name: String) -> String { states ? (stateClass[name] ?? "s\(index)") : "s\(index)" }
        if ordered.count > Self.maxStacks {
            var other: [String: MicroUSD] = [:]
            for s in ordered[(Self.maxStacks - 1)...] { for (k, v) in s.amounts { other[k, default: .zero] = other[k, default: .zero] + v } }
            ordered = Array(ordered.prefix(Self.maxStacks - 1)) + [(name: "other", amounts: other)]
        }
        let totals = buckets.map { b in ordered.reduce(MicroUSD.zero) { $0 + ($1.amounts[b.key] ?? .zero) } }
        let peak = max(totals.max()?.micros ?? 0, caps.map(\.amount.micros).max() ?? 0)
        // Four grid steps of a round size (1, 2, 2.5 or 5 × a power of ten) above the highest bar or cap.
        let step = Self.roundStep(Double(max(peak, 1)) / 4)
        let scale = step * 4
        let plotW = Self.width - Self.left - Self.right, plotH = Self.height - Self.top - Self.bottom
        let slot = Double(plotW) / Double(max(buckets.count, 1))
        let barW = max(1, Int((slot * 0.72).rounded()))
        func y(_ m: Int64) -> Int { Self.top + plotH - Int((Double(m) / scale * Double(plotH)).rounded()) }
        var rects: [Rect] = []
        var xTicks: [Tick] = []
        for (i, b) in buckets.enumerated() {
            let x = Self.left + Int((Double(i) * slot + (slot - Double(barW)) / 2).rounded())
            var base: Int64 = 0
            for (s, stack) in ordered.enumerated() {
                let m = stack.amounts[b.key] ?? .zero
                guard m.micros > 0 else { continue }
                let top = y(base + m.micros), bottom = y(base)
                rects.append(Rect(x: x, y: top, w: barW, h: max(1, bottom - top), series: cls(s, stack.name), usd: m.dollarString,
                                  title: "\(b.key) · \(stack.name): \(Format.usd(m))"))
                base += m.micros
            }
            if let tick = b.tick { xTicks.append(Tick(x: x + barW / 2, y: Self.height - 6, text: tick)) }
        }
        self.rects = rects
        self.xTicks = xTicks
        self.yTicks = (0...4).map { i in
            let m = Int64((step * Double(i)).rounded())
            return Tick(x: Self.left - 6, y: y(m), text: Format.usd(MicroUSD(m)))
        }
        self.lines = caps.map { Line(y: y($0.amount.micros), labelY: max(Self.top + 10, y($0.amount.micros) - 4), text: "\($0.name) \(Format.usd($0.amount))") }
        self.legend = ordered.enumerated().map { Legend(name: $0.element.name, series: cls($0.offset, $0.element.name)) }
        self.empty = rects.isEmpty
        let total = totals.reduce(MicroUSD.zero, +)
        self.label = "\(title): \(Format.usd(total)) in \(buckets.count) \(buckets.count == 24 ? "hours" : "days")"
            + (caps.isEmpty ? "" : "; " + caps.map { "\($0.name) \(Format.usd($0.amount))" }.joined(separator: ", "))
    }

    /// The smallest of 1, 2, 2.5, 5 × 10ⁿ micro-dollars at or above `raw`.
    static func roundStep(_ raw: Double) -> Double {
        let power = pow(10, floor(log10(max(raw, 1))))
        return [1, 2, 2.5, 5, 10].map { $0 * power }.first { $0 >= raw } ?? 10 * power
    }

    /// The `count` days ending with `today` (in `calendar`), as the series names them, every fifth one labelled.
    static func days(endingAt now: Date, count: Int, calendar: Calendar) -> [(key: String, tick: String?)] {
        let today = calendar.startOfDay(for: now)
        return (0..<count).reversed().map { back in
            let day = calendar.date(byAdding: .day, value: -back, to: today)!
            let key = KeyCalendar.dateString(day, calendar)
            return (key, back % 5 == 0 ? String(key.dropFirst(5)) : nil)
        }
    }

    /// Today's 24 hours (in `calendar`), as the series names them, every third one labelled.
    static func hours(of now: Date, calendar: Calendar) -> [(key: String, tick: String?)] {
        let day = KeyCalendar.dateString(now, calendar)
        return (0..<24).map { h in
            let hh = h < 10 ? "0\(h)" : "\(h)"
            return ("\(day)T\(hh):00", h % 3 == 0 ? "\(hh):00" : nil)
        }
    }
}

extension Templates {
    /// A `Chart` as SVG (readable without JavaScript, and in the browser test's screenshots).
    static let chart = """
        <figure class="chart">
        <svg id="{{chart.id}}" class="chart" viewBox="0 0 720 220" role="img" aria-label="{{chart.label}}"><title>{{chart.label}}</title>
        {{#chart.yTicks}}<line class="grid" x1="64" x2="712" y1="{{y}}" y2="{{y}}"/><text class="tick" x="{{x}}" y="{{y}}" text-anchor="end" dominant-baseline="middle">{{text}}</text>{{/chart.yTicks}}
        {{#chart.rects}}<rect class="{{series}}" x="{{x}}" y="{{y}}" width="{{w}}" height="{{h}}" data-usd="{{usd}}"><title>{{title}}</title></rect>{{/chart.rects}}
        {{#chart.lines}}<line class="cap" x1="64" x2="712" y1="{{y}}" y2="{{y}}"/><text class="caplabel" x="710" y="{{labelY}}" text-anchor="end">{{text}}</text>{{/chart.lines}}
        {{#chart.xTicks}}<text class="tick" x="{{x}}" y="{{y}}" text-anchor="middle">{{text}}</text>{{/chart.xTicks}}
        </svg>
        <figcaption>{{#chart.legend}}<span class="legend-item"><i class="sw {{series}}"></i>{{name}}</span> {{/chart.legend}}{{#chart.empty}}<span class="muted">No spend in this period.</span>{{/chart.empty}}</figcaption>
        </figure>
        """
}
