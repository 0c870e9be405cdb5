import PostgresNIO

/// Audit rows as parallel arrays, one per bound column (`AuditColumns.bound`) and one of usage months, for statements
/// that insert or complete many rows at once. Arrays cannot carry NULL through PostgresNIO, so absent values travel as
/// '' (text) and Int64.min (numbers), and `selectList` turns them back into NULL for the columns that may hold it.
public struct AuditArrays: Sendable {
    /// Where each bound column's values live: its position among the columns of its kind.
    static let slots: [Int] = {
        var counts = [0, 0, 0]
        return AuditColumns.bound.map { c in
            let kind = kind(c.type)
            defer { counts[kind] += 1 }
            return counts[kind]
        }
    }()
    static func kind(_ type: AuditColumn.SQLType) -> Int {
        switch type {
        case .int8, .int4: 1
        case .bool: 2
        default: 0
        }
    }
    static let kindCounts = (0..<3).map { k in AuditColumns.bound.filter { kind($0.type) == k }.count }

    var texts: [[String]]
    var ints: [[Int64]]
    var flags: [[Bool]]
    var usageMonths: [String] = []

    public init(_ rows: [(event: AuditEvent, usageMonth: String?)]) {
        texts = Array(repeating: [], count: Self.kindCounts[0])
        ints = Array(repeating: [], count: Self.kindCounts[1])
        flags = Array(repeating: [], count: Self.kindCounts[2])
        let getters = AuditColumns.getters, slots = Self.slots
        for (e, usageMonth) in rows {
            for i in getters.indices {
                switch getters[i](e) {
                case .text(let v): texts[slots[i]].append(v ?? "")
                case .int(let v): ints[slots[i]].append(v ?? Int64.min)
                case .bool(let v): flags[slots[i]].append(v)
                }
            }
            usageMonths.append(usageMonth ?? "")
        }
    }

    /// One array per bound column, in `AuditColumns.bound` order, then the usage months.
    public func bind(into b: inout PostgresBindings) {
        for (i, c) in AuditColumns.bound.enumerated() {
            switch Self.kind(c.type) {
            case 1: b.append(ints[Self.slots[i]])
            case 2: b.append(flags[Self.slots[i]])
            default: b.append(texts[Self.slots[i]])
            }
        }
        b.append(usageMonths)
    }

    /// How many parameters `bind` binds.
    public static let parameterCount = AuditColumns.count + 1

    /// `unnest(...) WITH ORDINALITY AS r(<bound columns>, usage_month, ord)` over the arrays bound from `$first`.
    public static func unnest(from first: Int) -> String {
        let types = AuditColumns.bound.map { kind($0.type) == 1 ? "int8" : $0.type.rawValue } + ["text"]
        let arrays = types.enumerated().map { "$\(first + $0.offset)::\($0.element)[]" }.joined(separator: ", ")
        let names = AuditColumns.bound.map(\.name).joined(separator: ", ")
        return "unnest(\(arrays)) WITH ORDINALITY AS r(\(names), usage_month, ord)"
    }

    /// A bound column's value from `r`, NULL restored where the column may hold it.
    public static func value(_ c: AuditColumn) -> String {
        guard c.nullable else { return "r." + c.name }
        let sentinel = kind(c.type) == 1 ? "\(Int64.min)" : "''"
        return "NULLIF(r.\(c.name), \(sentinel))" + c.type.cast
    }

    /// The values of `AuditColumns.names` from `r`, NULLs restored (and `now()` for created_at).
    public static let selectList = AuditColumns.all.compactMap { c -> String? in
        if c.isCreatedAt { return "now()" }
        return c.value == nil ? nil : value(c)
    }.joined(separator: ", ")

    /// `column = <value from r>` for the columns a completion fills in (`AuditColumn.completes`).
    public static let completions = AuditColumns.bound.filter(\.completes).map { "\($0.name) = \(value($0))" }
        .joined(separator: ", ")
}
