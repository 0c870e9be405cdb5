import Foundation
import HTTPLayer
import KeybrakeCore
import PostgresNIO

/// The audit table's columns, listed once (`all`). Everything that writes or reads a row derives from this list: the
/// typed INSERTs and the completion UPDATEs of the proxy's statements (names, placeholders, binding types, `bind`),
/// the array codec of its batched statements (`AuditArrays`), the JSON `kb_resolve` reads (`AuditEvent.columnsJSON`),
/// what the readers select and how `AuditRepository` decodes it, the API's JSON and the CSV export. Adding a column
/// is a line here, its property on `AuditEvent` / `AuditRecord`, and the SQL function bodies that name columns
/// (`Migrations/functions/kb_resolve.sql`, `kb_expire_in_flight.sql`) and a numbered migration that adds it.
public enum AuditColumns {
    /// In the order the API's CSV shows them (and the readers select them).
    public static let all: [AuditColumn] = [
        .text("id", { $0.id }, \.id),
        .writeOnly("tenant_id") { .text($0.tenantId) },   // reads are scoped by it
        .createdAt,
        .text("key_id", { $0.keyId }, \.keyId),
        .text("key_label", { $0.keyLabel }, \.keyLabel),
        .text("vendor", { $0.vendor }, \.vendor),
        .text("method", { $0.method }, \.method),
        .text("path", { $0.path }, \.path),
        .text("operation", { $0.operation }, \.operation),
        .text("decision", { $0.decision.rawValue }, \.decision, completes: true),
        .text("error_code", { $0.errorCode }, \.errorCode, completes: true),
        .text("state", { $0.state?.rawValue }, \.state, completes: true),
        .int4("upstream_status", { $0.upstreamStatus }, \.upstreamStatus, completes: true),
        .amountMicros,
        .int8("amount_minor", { $0.amountMinor }, \.amountMinor),
        .text("currency", { $0.currency }, \.currency),
        .text("idempotency_key", { $0.idempotencyKey }, \.idempotencyKey),
        .bool("idempotency_auto", { $0.idempotencyAuto }, \.idempotencyAuto),
        .text("upstream_request_id", { $0.upstreamRequestId }, \.upstreamRequestId, completes: true),
        .text("run_id", { $0.runId }, \.runId),
        .text("outcome", { $0.outcome?.rawValue }, \.outcome, completes: true),
        .text("duplicate_of", { $0.duplicateOf }, \.duplicateOf),
        .text("resolves", { $0.resolves }, \.resolves),
        .int8("overhead_us", { $0.overheadUs }, \.overheadUs, completes: true),
        .int8("upstream_us", { $0.upstreamUs }, \.upstreamUs, completes: true),
        .text("vendor_account", { $0.vendorAccount }, \.vendorAccount),
        .parentKeyIds,
        .readOnlyInt4("attempts", \.attempts),   // written only by the unverified-attempts summary (UnverifiedAttempts)
    ]

    // MARK: - Writing (derived once; the statements that use them are static too)

    /// The columns a statement binds, in binding order (all but created_at, which is `now()`, and the read-only ones).
    public static let bound = all.filter { $0.value != nil }
    /// How many columns a statement binds.
    public static let count = bound.count
    static let getters = bound.map { $0.value! }
    /// Explicit: a NULL binding carries no type, and a statement prepared with one would take the type from its
    /// context (`$n::int` → int4) and then reject the int8 a later request binds there.
    public static let types: [PostgresDataType] = bound.map(\.type.bindingType)

    /// Insert column names; `placeholders(from:)` has a value for each, in the same order.
    public static let names = all.filter { $0.value != nil || $0.isCreatedAt }.map(\.name).joined(separator: ", ")
    /// The values of `names`, bound from $1.
    public static let values = placeholders(from: 1)

    /// The bound columns' placeholders from `$first` (int4 columns cast), and `now()` for created_at, in `names`' order:
    /// for statements that bind the audit columns after their own parameters.
    public static func placeholders(from first: Int) -> String {
        var n = first - 1
        return all.compactMap { c -> String? in
            if c.isCreatedAt { return "now()" }
            guard c.value != nil else { return nil }
            n += 1
            return "$\(n)" + c.type.cast
        }.joined(separator: ", ")
    }

    /// The placeholder `values` gives column `name` (for statements whose own SQL names one of the bound columns).
    public static func placeholder(_ name: String) -> String {
        "$\(bound.firstIndex { $0.name == name }! + 1)"
    }

    /// `column = $n` for every bound column but the row's identity (id, tenant_id), with `values`' numbering:
    /// completing a row written before the request was forwarded.
    public static let assignments = bound.enumerated().filter { !["id", "tenant_id"].contains($0.element.name) }
        .map { "\($0.element.name) = $\($0.offset + 1)\($0.element.type.cast)" }.joined(separator: ", ")

    public static func bind(_ e: AuditEvent, into b: inout PostgresBindings) {
        for get in getters {
            switch get(e) {
            case .text(let v): b.append(v)
            case .int(let v): b.append(v)
            case .bool(let v): b.append(v)
            }
        }
    }

    /// Binds a NULL per column, in the columns' types: a statement whose audit row is optional.
    public static func bindAbsent(into b: inout PostgresBindings) {
        for c in bound {
            switch c.type {
            case .int8, .int4: b.append(Int64?.none)
            case .bool: b.append(Bool?.none)
            default: b.append(String?.none)
            }
        }
    }

    // MARK: - Reading

    /// The columns the readers select, in this order (`AuditRepository.decode`).
    static let read = all.filter { $0.selected != nil }
    /// What the readers select: every column but tenant_id (reads are scoped by it), and the key's parent chain.
    public static let select = read.map { $0.selected! }.joined(separator: ", ")
    /// The CSV export's columns: every column read, `amount_micros` shown as `amount_usd`.
    static let csv = read.filter { $0.csvName != nil }
    public static let csvHeader = csv.map { $0.csvName! }
}

/// A value a writer binds for one column (text, a number, a flag): read off an `AuditEvent` without allocating.
public enum AuditValue: Sendable, Equatable {
    case text(String?)
    case int(Int64?)
    case bool(Bool)
}

/// One column of `audit_events`: its name and SQL type, how writers read it off an `AuditEvent`, how readers select
/// it and store it in an `AuditRecord`, and how the API's JSON and CSV show it.
public struct AuditColumn: Sendable {
    public enum SQLType: String, Sendable {
        case text, int8, int4 = "int", bool, timestamptz, textArray = "text[]"

        /// int4 columns are bound as int8 and cast (one binding type for every number; see `AuditColumns.types`).
        var bindingType: PostgresDataType {
            switch self {
            case .text: .text
            case .int8, .int4: .int8
            case .bool: .bool
            case .timestamptz: .timestamptz
            case .textArray: .textArray
            }
        }
        var cast: String { self == .int4 ? "::int" : "" }
    }

    public let name: String
    public let type: SQLType
    /// Whether the column may hold NULL (the array codec's sentinels turn back into NULL only for these).
    public let nullable: Bool
    /// Set when the request's answer arrives: a row written before forwarding is completed by updating these.
    public let completes: Bool
    /// The value a writer binds; nil for created_at (`now()`) and columns the proxy never writes.
    let value: (@Sendable (AuditEvent) -> AuditValue)?
    var isCreatedAt: Bool { name == "created_at" }
    /// What the readers select for it (the column, or an expression); nil: not read.
    let selected: String?
    /// Its name in the CSV header and the API's JSON.
    let csvName: String?
    let decode: (@Sendable (inout AuditRecord, PostgresCell) throws -> Void)?
    let cell: (@Sendable (AuditRecord) -> String?)?
    let encode: (@Sendable (AuditRecord, inout KeyedEncodingContainer<AuditJSONKey>) throws -> Void)?

    /// A column read into `record`: selected as `selected`, shown in the CSV by `csv` and in the JSON by `json`.
    init<V: PostgresDecodable & Sendable, J: Encodable>(
        _ name: String, _ type: SQLType, nullable: Bool, completes: Bool = false, value: (@Sendable (AuditEvent) -> AuditValue)?,
        record: WritableKeyPath<AuditRecord, V> & Sendable, selected: String? = nil, shownAs: String? = nil,
        csv: @escaping @Sendable (V) -> String?, json: @escaping @Sendable (V) -> J
    ) {
        self.name = name
        self.type = type
        self.nullable = nullable
        self.completes = completes
        self.value = value
        self.selected = selected ?? name
        self.csvName = shownAs ?? name
        let key = AuditJSONKey(shownAs ?? name)
        decode = { r, cell in r[keyPath: record] = try cell.decode(V.self) }
        cell = { r in csv(r[keyPath: record]) }
        encode = { r, c in try c.encode(json(r[keyPath: record]), forKey: key) }
    }

    /// A column the proxy writes and the readers never see.
    static func writeOnly(_ name: String, _ value: @escaping @Sendable (AuditEvent) -> AuditValue) -> AuditColumn {
        AuditColumn(name: name, value: value)
    }

    private init(name: String, value: @escaping @Sendable (AuditEvent) -> AuditValue) {
        self.name = name
        type = .text
        nullable = false
        completes = false
        self.value = value
        selected = nil
        csvName = nil
        decode = nil
        cell = nil
        encode = nil
    }

    static func text(_ name: String, _ get: @escaping @Sendable (AuditEvent) -> String?,
                     _ record: WritableKeyPath<AuditRecord, String?> & Sendable, completes: Bool = false) -> AuditColumn {
        AuditColumn(name, .text, nullable: true, completes: completes, value: { .text(get($0)) }, record: record,
                    csv: { $0 }, json: { $0 })
    }

    static func text(_ name: String, _ get: @escaping @Sendable (AuditEvent) -> String,
                     _ record: WritableKeyPath<AuditRecord, String> & Sendable, completes: Bool = false) -> AuditColumn {
        AuditColumn(name, .text, nullable: false, completes: completes, value: { .text(get($0)) }, record: record,
                    csv: { $0 }, json: { $0 })
    }

    static func int8(_ name: String, _ get: @escaping @Sendable (AuditEvent) -> Int64?,
                     _ record: WritableKeyPath<AuditRecord, Int64?> & Sendable, completes: Bool = false) -> AuditColumn {
        AuditColumn(name, .int8, nullable: true, completes: completes, value: { .int(get($0)) }, record: record,
                    csv: { $0.map(String.init) }, json: { $0 })
    }

    static func int4(_ name: String, _ get: @escaping @Sendable (AuditEvent) -> Int?,
                     _ record: WritableKeyPath<AuditRecord, Int?> & Sendable, completes: Bool = false) -> AuditColumn {
        AuditColumn(name, .int4, nullable: true, completes: completes, value: { .int(get($0).map(Int64.init)) }, record: record,
                    csv: { $0.map(String.init) }, json: { $0 })
    }

    static func readOnlyInt4(_ name: String, _ record: WritableKeyPath<AuditRecord, Int?> & Sendable) -> AuditColumn {
        AuditColumn(name, .int4, nullable: true, value: nil, record: record, csv: { $0.map(String.init) }, json: { $0 })
    }

    static func bool(_ name: String, _ get: @escaping @Sendable (AuditEvent) -> Bool,
                     _ record: WritableKeyPath<AuditRecord, Bool> & Sendable) -> AuditColumn {
        AuditColumn(name, .bool, nullable: false, value: { .bool(get($0)) }, record: record, csv: { String($0) }, json: { $0 })
    }

    /// Written as `now()` by every insert.
    static let createdAt = AuditColumn("created_at", .timestamptz, nullable: false, value: nil, record: \.createdAt,
                                       csv: { RFC3339.format($0) }, json: { $0 })

    /// Shown in dollars (`amount_usd`), exact.
    static let amountMicros = AuditColumn("amount_micros", .int8, nullable: false, value: { .int($0.amountMicros) },
                                          record: \.amountMicros, shownAs: "amount_usd",
                                          csv: { MicroUSD($0).dollarString }, json: { USDAmount(MicroUSD($0)) })

    /// Not a column: the key's parents, root first, read from the key (whose chain never changes, so the row needs no copy).
    static let parentKeyIds = AuditColumn(
        "parent_key_ids", .textArray, nullable: false, value: nil, record: \.parentKeyIds,
        selected: "COALESCE((SELECT v.ancestor_ids FROM vault_keys v WHERE v.id = audit_events.key_id), '{}') AS parent_key_ids",
        csv: { $0.joined(separator: " ") }, json: { $0 })
}

/// A key of the audit row's JSON (the column's name, already snake_case).
public struct AuditJSONKey: CodingKey, Sendable {
    public let stringValue: String
    public var intValue: Int? { nil }
    public init(_ name: String) { stringValue = name }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}
