import Foundation
import KeybrakeCore

/// One proxied request as the audit trail records it (DESIGN §10). Built up by the proxy as the
/// request moves through the pipeline; never holds secrets, tokens or bodies.
public struct AuditEvent: Sendable, Encodable, Equatable {
    public enum Decision: String, Sendable, Encodable { case allowed, denied, replayed, resolved }
    public enum Outcome: String, Sendable, Encodable { case settled, released, outcomeUnknown = "outcome_unknown" }

    public var id: String
    public var tenantId: String
    public var keyId: String?
    public var keyLabel: String?
    public var vendor: String
    public var method: String
    public var path: String
    public var operation: String?
    public var decision: Decision = .denied
    public var errorCode: String?
    public var upstreamStatus: Int?
    public var amountMinor: Int64?
    public var currency: String?
    public var amountMicros: Int64 = 0
    public var idempotencyKey: String?
    public var idempotencyAuto: Bool = false
    public var upstreamRequestId: String?
    public var runId: String?
    public var outcome: Outcome?
    public var duplicateOf: String?
    public var resolves: String?
    public var overheadUs: Int64?
    public var upstreamUs: Int64?

    public init(id: String = Identifier.make("aud"), tenantId: String, vendor: String, method: String, path: String) {
        self.id = id
        self.tenantId = tenantId
        self.vendor = vendor
        self.method = method
        self.path = path
    }

    /// JSON with the audit table's column names, for `jsonb_populate_record`.
    public func columnsJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// Run ids and idempotency keys come from agents: keep them bounded and printable.
    public static func sanitize(_ value: String?, maxLength: Int = 255) -> String? {
        guard let value, !value.isEmpty else { return nil }
        let printable = String(value.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.map(Character.init))
        return String(printable.prefix(maxLength))
    }
}
