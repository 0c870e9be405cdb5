import Foundation

/// One audit row as the API shows it. Read (`AuditRepository.decode`) and shown (JSON, CSV) column by column, as
/// `AuditColumns.all` lists them.
public struct AuditRecord: Sendable {
    public var id = ""
    public var keyId: String?
    public var keyLabel: String?
    public var vendor = ""
    public var method = ""
    public var path = ""
    public var operation: String?
    public var decision = ""
    public var errorCode: String?
    /// `in_flight`, `lease_expired`, or nil once the row says how the request ended (`AuditEvent.State`).
    public var state: String?
    public var upstreamStatus: Int?
    public var amountMinor: Int64?
    public var currency: String?
    public var amountMicros: Int64 = 0
    public var idempotencyKey: String?
    public var idempotencyAuto = false
    public var upstreamRequestId: String?
    public var runId: String?
    public var outcome: String?
    public var duplicateOf: String?
    public var resolves: String?
    public var overheadUs: Int64?
    public var upstreamUs: Int64?
    public var vendorAccount: String?
    public var createdAt = Date(timeIntervalSince1970: 0)
    /// A summary row of unverified attempts on the key: how many it stands for.
    public var attempts: Int?
    /// The key's parents, root first (a child key's rows); empty for a root key.
    public var parentKeyIds: [String] = []

    public init() {}

    /// The row's cells in CSV order (`AuditColumns.csvHeader`), absent values as nil.
    public var csvCells: [String?] { AuditColumns.csv.map { $0.cell!(self) } }
}

/// The API's JSON of a row: every column read, under its name (absent values as explicit nulls).
extension AuditRecord: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: AuditJSONKey.self)
        for column in AuditColumns.read { try column.encode!(self, &c) }
    }
}
