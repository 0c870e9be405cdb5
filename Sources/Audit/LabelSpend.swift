import KeybrakeCore

/// One label's spend on a day: its keys' spend added up (GET /v1/spend?group_by=label and the dashboard overview).
public struct LabelSpend: Sendable {
    public let label: String
    public let keys: [SpendRepository.KeyDay]
    public let settled: MicroUSD
    public let reserved: MicroUSD
    public let unknown: MicroUSD
    /// A label's cap is the sum of its keys' caps; one uncapped key makes the whole label uncapped.
    public let dailyCap: MicroUSD?

    public var spent: MicroUSD { settled + reserved + unknown }
    /// The vendor, when every key of the label has the same one.
    public var vendor: String? { Set(keys.map(\.vendor)).count == 1 ? keys.first?.vendor : nil }

    public init(label: String, keys: [SpendRepository.KeyDay]) {
        self.label = label
        self.keys = keys
        settled = keys.reduce(MicroUSD.zero) { $0 + $1.settled }
        reserved = keys.reduce(MicroUSD.zero) { $0 + $1.reserved }
        unknown = keys.reduce(MicroUSD.zero) { $0 + $1.unknown }
        dailyCap = keys.allSatisfy({ $0.dailyCap != nil }) ? keys.reduce(MicroUSD.zero) { $0 + ($1.dailyCap ?? .zero) } : nil
    }

    /// The keys grouped by label, labels in the order they first appear.
    public static func group(_ keys: [SpendRepository.KeyDay]) -> [LabelSpend] {
        var order: [String] = []
        var groups: [String: [SpendRepository.KeyDay]] = [:]
        for k in keys {
            if groups[k.label] == nil { order.append(k.label) }
            groups[k.label, default: []].append(k)
        }
        return order.map { LabelSpend(label: $0, keys: groups[$0] ?? []) }
    }
}
