import Foundation
import KeybrakeCore

/// One proxied request as the audit trail records it (DESIGN §10). Built up by the proxy as the
/// request moves through the pipeline; never holds secrets, tokens or bodies.
public struct AuditEvent: Sendable, Encodable, Equatable {
    public enum Decision: String, Sendable, Encodable { case allowed, denied, replayed, resolved }
    public enum Outcome: String, Sendable, Encodable { case settled, released, outcomeUnknown = "outcome_unknown" }
    /// Where the row is in its request's life; nil once it says how the request ended.
    public enum State: String, Sendable, Encodable {
        /// Written before the request was forwarded (with its reservation, or while a call that moves no money is
        /// upstream); its completion sets the state back to nil.
        case inFlight = "in_flight"
        /// The request's lease ran out while it was in flight (its replica died): its outcome is unknown.
        case leaseExpired = "lease_expired"
    }

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
    public var state: State?
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
    /// The vendor account the request named (Stripe-Account, Stripe-Context), as sent.
    public var vendorAccount: String?

    public init(id: String = Identifier.make("aud"), tenantId: String, vendor: String, method: String, path: String) {
        self.id = id
        self.tenantId = tenantId
        self.vendor = vendor
        self.method = method
        self.path = path
    }

    /// JSON with the audit table's column names (the bound ones), for `jsonb_populate_record` in `kb_resolve`;
    /// absent values are left out (NULL columns). Written by hand for this flat shape; it runs when a tenant resolves
    /// a request, not on proxied requests.
    public func columnsJSON() throws -> String {
        var out = "{"
        for (column, get) in zip(AuditColumns.bound, AuditColumns.getters) {
            let value: String
            switch get(self) {
            case .text(let v?): value = Self.quoted(v)
            case .int(let v?): value = String(v)
            case .bool(let v): value = v ? "true" : "false"
            case .text(nil), .int(nil): continue
            }
            if out.count > 1 { out += "," }
            out += "\"" + column.name + "\":" + value
        }
        return out + "}"
    }

    /// A JSON string literal (RFC 8259 escaping).
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                var escape: [UInt8] = Array("\\u00".utf8)
                Hex.append(UInt8(scalar.value), to: &escape)
                out += String(decoding: escape, as: UTF8.self)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Run ids and idempotency keys come from agents: keep them bounded and printable.
    public static func sanitize(_ value: String?, maxLength: Int = 255) -> String? {
        guard let value, !value.isEmpty else { return nil }
        let printable = String(value.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.map(Character.init))
        return String(printable.prefix(maxLength))
    }
}
