import Foundation
import HTTPLayer
import KeybrakeCore

/// Filters of GET /v1/audit and the dashboard's audit page; every one optional, all combined with AND.
public struct AuditFilter: Sendable {
    public var keyId: String?
    /// Rows of the key's descendants (child keys, per run).
    public var parentKeyId: String?
    public var vendor: String?
    public var decision: String?
    public var status: Int?
    public var errorCode: String?
    public var state: String?
    public var from: Date?
    public var to: Date?
    public var idempotencyKey: String?
    public var runId: String?
    public var outcome: String?
    public init() {}

    /// The values of `decision` and `outcome`, in the order the dashboard offers them.
    public static let decisions = ["allowed", "denied", "replayed", "resolved"]
    public static let outcomes = ["settled", "released", "outcome_unknown"]
    /// The values of `state` (a row that says how its request ended has none).
    public static let states = [AuditEvent.State.inFlight.rawValue, AuditEvent.State.leaseExpired.rawValue]

    /// The filter a query string asks for (query parameter name → value; empty values are absent), or the
    /// `invalid_request` naming the first bad parameter.
    /// `defaultWindowUntil`: the dashboard's pages, where a filter that needs a window and names none reads the 31
    /// days up to then (the API answers 400 instead, so a client learns the rule).
    public static func parse(_ query: [String: String], defaultWindowUntil: Date? = nil) throws(KeybrakeError) -> AuditFilter {
        var f = AuditFilter()
        func text(_ name: String, max: Int = 255) throws(KeybrakeError) -> String? {
            guard let v = query[name], !v.isEmpty else { return nil }
            guard v.count <= max else { throw .invalidRequest("\(name) is too long.", field: name) }
            guard !v.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw .invalidRequest("\(name) must not contain control characters.", field: name)
            }
            return v
        }
        f.keyId = try text("key_id", max: 64)
        f.parentKeyId = try text("parent_key_id", max: 64)
        if let v = try text("vendor", max: 20) {
            guard Vendor(rawValue: v) != nil else { throw .invalidRequest("vendor must be one of \(Vendor.names).", field: "vendor") }
            f.vendor = v
        }
        if let v = try text("decision", max: 20) {
            guard decisions.contains(v) else { throw .invalidRequest("decision must be one of \(decisions.sorted().joined(separator: ", ")).", field: "decision") }
            f.decision = v
        }
        if let v = try text("outcome", max: 20) {
            guard outcomes.contains(v) else { throw .invalidRequest("outcome must be one of \(outcomes.sorted().joined(separator: ", ")).", field: "outcome") }
            f.outcome = v
        }
        if let v = try text("status", max: 3) {
            guard let s = Int(v), (100...599).contains(s) else { throw .invalidRequest("status must be an HTTP status code.", field: "status") }
            f.status = s
        }
        f.errorCode = try text("error_code", max: 64)
        if let v = try text("state", max: 20) {
            guard states.contains(v) else { throw .invalidRequest("state must be one of \(states.sorted().joined(separator: ", ")).", field: "state") }
            f.state = v
        }
        for name in ["from", "to"] {
            if let v = try text(name, max: 64) {
                guard let d = RFC3339.parse(v) else { throw .invalidRequest("\(name) must be an RFC 3339 timestamp.", field: name) }
                if name == "from" { f.from = d } else { f.to = d }
            }
        }
        f.idempotencyKey = try text("idempotency_key")
        f.runId = try text("run_id", max: 200)
        if let from = f.from, let to = f.to, to < from {
            throw .invalidRequest("to must not be before from.", field: "to")
        }
        if let now = defaultWindowUntil { f.applyDefaultWindow(now: now) }
        try f.requireIndexOrWindow()
        return f
    }

    /// The longest from/to window a filter without an index may walk (DESIGN §16).
    public static let maxUnindexedWindow: TimeInterval = 31 * 86_400

    /// The values every request that goes as expected ends with: the bulk of a trail, and so in no index (their rows
    /// would be a second copy of the table; and a request's row is written before it is forwarded and completed
    /// after, which Postgres does without touching any index only while no indexed column changes: Migrations/0014).
    /// `state=in_flight` likewise (every row is in flight for a moment; 0017 indexes no state).
    public static func isExpected(status: Int) -> Bool { (200...299).contains(status) }
    public static let expectedOutcome = "settled"
    public static let expectedState = AuditEvent.State.inFlight.rawValue

    /// Whether an index serves this filter (Migrations/0002, 0012 and 0014): key, parent key (its children's key
    /// ids), idempotency key, run id, vendor, every decision but `allowed`, every error code, every status and outcome
    /// but the expected ones (2xx, `settled`), and `state=lease_expired` (through the outcome index: such a row's outcome
    /// is always `outcome_unknown`).
    public var isIndexed: Bool {
        keyId != nil || parentKeyId != nil || idempotencyKey != nil || runId != nil || vendor != nil
            || (decision != nil && decision != "allowed")
            || errorCode != nil
            || (status.map { !Self.isExpected(status: $0) } ?? false)
            || (outcome != nil && outcome != Self.expectedOutcome)
            || (state != nil && state != Self.expectedState)
    }

    /// The filter on an expected value that makes it need a window, named as the query string names it.
    var unindexedFilter: String? {
        if decision == "allowed" { return "decision=allowed" }
        if let status, Self.isExpected(status: status) { return "status=\(status)" }
        if outcome == Self.expectedOutcome { return "outcome=\(Self.expectedOutcome)" }
        if state == Self.expectedState { return "state=\(Self.expectedState)" }
        return nil
    }

    /// A filter on an expected value alone (`decision=allowed`, a 2xx `status`, `outcome=settled`,
    /// `state=in_flight`) has no index: it walks the newest-first index, so it must say which window, `from`
    /// and `to` at most 31 days apart. No filter at all, or only `from`/`to`, reads that index in order.
    func requireIndexOrWindow() throws(KeybrakeError) {
        guard let unindexed = unindexedFilter, !isIndexed else { return }
        guard let from else {
            throw .invalidRequest("\(unindexed) needs a time window: give from and to (at most 31 days apart), or add an indexed filter such as key_id, vendor or run_id.", field: "from")
        }
        guard let to, to.timeIntervalSince(from) <= Self.maxUnindexedWindow else {
            throw .invalidRequest("\(unindexed) needs to, at most 31 days after from, or an indexed filter such as key_id, vendor or run_id.", field: "to")
        }
    }

    /// The dashboard's version of the rule: a filter that needs a window and was given none reads the 31 days up to
    /// `now`, so every option the page offers answers.
    mutating func applyDefaultWindow(now: Date) {
        guard unindexedFilter != nil, !isIndexed, from == nil, to == nil else { return }
        from = now.addingTimeInterval(-Self.maxUnindexedWindow)
        to = now
    }
}
