import Audit
import Foundation
import KeybrakeCore
import Logging
import PostgresNIO
import Storage

/// The money state of the data plane. Every call is one statement (its SQL in LedgerStatements.swift, the functions
/// it calls in Migrations/functions/): caps, quota and key status are checked and reserved atomically in Postgres,
/// across any number of replicas.
public struct SpendLedger: Sendable {
    let client: DatabasePool
    /// Audit-only rows that arrive while one such insert is in flight are inserted together (one statement, one
    /// commit). Each request still answers only after its own row is committed.
    let auditRows: Coalescer<Int, AuditRow, Void>
    /// Completions of rows written early (`auditEarly`), batched like the inserts; nobody waits for them.
    let auditCompletions: Coalescer<Int, AuditRow, Void>

    struct AuditRow: Sendable {
        var event: AuditEvent
        var countUsageMonth: String?
        var logger: Logger
    }

    public init(client: DatabasePool) {
        self.client = client
        self.auditRows = Coalescer(maxBatch: 256) { rows, _ in
            if rows.count > 1 {
                do {
                    for try await _ in try await client.execute(AuditOnlyManyStatement(rows), logger: rows[0].logger) {}
                    return rows.map { _ in .success(()) }
                } catch {
                    // Nothing of the batch was committed; one row the database refuses must not cost the others theirs.
                    rows[0].logger.warning("batched audit insert failed; inserting one by one", metadata: ["rows": "\(rows.count)"])
                }
            }
            var outcomes: [Result<Void, any Error>] = []
            for row in rows {
                do {
                    for try await _ in try await client.execute(AuditOnlyStatement(event: row.event, countUsageMonth: row.countUsageMonth),
                                                                logger: row.logger) {}
                    outcomes.append(.success(()))
                } catch {
                    outcomes.append(.failure(error))
                }
            }
            return outcomes
        }
        self.auditCompletions = Coalescer(maxBatch: 256) { rows, _ in
            do {
                for try await _ in try await client.execute(AuditCompleteManyStatement(rows), logger: rows[0].logger) {}
                return rows.map { _ in .success(()) }
            } catch {
                rows[0].logger.warning("could not complete audit rows written before forwarding; they stay in_flight",
                                       metadata: ["rows": "\(rows.count)"])
                return rows.map { _ in .failure(error) }
            }
        }
    }

    /// The audit row of a call that moves no money, written while the call is upstream (DESIGN §12: real vendor
    /// latency hides the round trip). Its state is `in_flight` until `completeEarlyRow`. False if it could not be
    /// written: the caller then writes the whole row after the answer, as for any call.
    public func auditEarly(_ event: AuditEvent, countUsageMonth: String?, logger: Logger) async -> Bool {
        var pending = event
        pending.decision = .allowed
        pending.state = .inFlight
        do {
            try await auditRows.submit(AuditRow(event: pending, countUsageMonth: countUsageMonth, logger: logger), lane: 0)
            return true
        } catch {
            return false
        }
    }

    /// Fills in the answer of a row written by `auditEarly`, without making the agent wait for it (if the process
    /// dies first, the row stays `in_flight`: the call is recorded, its answer is not).
    public func completeEarlyRow(_ event: AuditEvent, logger: Logger) {
        let completions = auditCompletions
        Task { try? await completions.submit(AuditRow(event: event, countUsageMonth: nil, logger: logger), lane: 0) }
    }

    public enum ReserveResult: Sendable, Equatable {
        case ok
        /// Denial code from kb_reserve with the figures for its message.
        case denied(code: String, used: Int64, cap: Int64)
    }

    /// Reserves `amount` against the key's day and month and counts the request against the tenant's quota.
    /// `amount` 0 only counts the request (and re-checks the key's status). `pending` is the request's audit row,
    /// written in the same statement when money is reserved (before the request is forwarded).
    public func reserve(
        keyId: String, tenantId: String, amount: MicroUSD, day: String, month: String, usageMonth: String,
        freeQuota: Int, reservationId: String, pending: AuditEvent? = nil, logger: Logger
    ) async throws -> ReserveResult {
        let statement = ReserveStatement(keyId: keyId, tenantId: tenantId, amount: amount.micros, day: day, month: month,
                                         usageMonth: usageMonth, freeQuota: Int64(freeQuota), reservationId: reservationId,
                                         pending: amount > .zero ? pending : nil)
        for try await (result, used, cap) in try await client.execute(statement, logger: logger) {
            return result == "ok" ? .ok : .denied(code: result, used: used, cap: cap)
        }
        throw KeybrakeError.internalError
    }

    public enum ClaimReserveResult: Sendable, Equatable {
        /// Every scope claimed and the money reserved.
        case ok
        /// Another request holds some scope: nothing reserved; `claimed` are the scopes this request did get.
        case claimsPartial(claimed: Set<String>)
        /// The reserve was refused; the claims were given back.
        case denied(code: String, used: Int64, cap: Int64)

        /// A row of kb_claim_and_reserve / kb_claim_and_reserve_many.
        init(result: String, used: Int64, cap: Int64, claimed: [String]) {
            switch result {
            case "ok": self = .ok
            case "claims_partial": self = .claimsPartial(claimed: Set(claimed))
            default: self = .denied(code: result, used: used, cap: cap)
            }
        }
    }

    /// Claims one request's idempotency records and reserves its amount, in one statement (kb_claim_and_reserve;
    /// kb_claim orders the scopes).
    func claimAndReserve(_ item: ClaimReserveBatcher.Item, key: ClaimReserveBatcher.Key) async throws -> ClaimReserveResult {
        // Postgres arrays of text cannot carry NULL through PostgresNIO's [String]: '' stands for "no upstream key".
        let claims = item.claims
        let statement = ClaimAndReserveStatement(
            tenantId: key.tenantId, ownerId: item.ownerId, scopes: claims.map(\.scope), hashes: claims.map(\.requestHash),
            upstreamKeys: claims.map { $0.upstreamKey ?? "" }, ttls: claims.map { Int32(clamping: $0.ttl.components.seconds) },
            keyId: key.keyId, amount: item.amount.micros, day: key.day, month: key.month, usageMonth: key.usageMonth,
            freeQuota: Int64(key.freeQuota), pending: item.pending)
        for try await (result, used, cap, claimed) in try await client.execute(statement, logger: item.logger) {
            return ClaimReserveResult(result: result, used: used, cap: cap, claimed: claimed)
        }
        throw KeybrakeError.internalError
    }

    public struct Finish: Sendable {
        public var audit: AuditEvent
        /// The request that holds the records and the reservation (the audit row's id, except for a late undo,
        /// whose own row resolves that request's).
        public var ownerId: String
        public var reservationId: String?
        public var outcome: String?          // settled | released | unknown
        public var actual: MicroUSD?
        public var completeScopes: [String] = []
        /// Seconds each completed record is kept from now (its window; an unknown outcome's: the idempotency TTL).
        public var completeWindows: [Int32] = []
        public var recordState: String = "completed"
        /// Records handed back to this earlier request, whose outcome stays unknown.
        public var restoreOwner: String?
        public var dropScopes: [String] = []
        public var response: StoredResponse?
        public var countedObject: String?
        /// UTC month (YYYY-MM-01) to count this request in, when no reserve step counted it.
        public var countUsageMonth: String?
        /// The request's audit row may already exist (a reserve that committed after its deadline, an early write
        /// whose answer was lost): this completes that row if it is there instead of adding a second with the same id.
        public var auditRowMayExist = false

        public init(audit: AuditEvent, ownerId: String) {
            self.audit = audit
            self.ownerId = ownerId
        }

        /// Only the audit row (and maybe a request count) to write: no money, no idempotency records.
        var isAuditOnly: Bool { reservationId == nil && completeScopes.isEmpty && dropScopes.isEmpty && countedObject == nil }
    }

    /// Settles the reservation, writes (or completes) the audit row and completes idempotency records, atomically.
    public func finish(_ f: Finish, logger: Logger) async throws {
        if f.isAuditOnly && !f.auditRowMayExist {
            try await auditRows.submit(AuditRow(event: f.audit, countUsageMonth: f.countUsageMonth, logger: logger), lane: 0)
            return
        }
        // The response is kept only in the idempotency records this request completes.
        let stored = f.completeScopes.isEmpty ? nil : f.response
        let statement = FinishStatement(
            event: f.audit, ownerId: f.ownerId, reservationId: f.reservationId, outcome: f.outcome, actual: f.actual?.micros,
            completeScopes: f.completeScopes, completeWindows: f.completeWindows, recordState: f.recordState,
            restoreOwner: f.restoreOwner, dropScopes: f.dropScopes,
            status: stored.map { Int64($0.status) }, headersJSON: stored.map { Self.headersJSON($0.headers) },
            body: stored.map { ByteBuffer(bytes: $0.body) }, countedObject: f.countedObject, countUsageMonth: f.countUsageMonth)
        for try await _ in try await client.execute(statement, logger: logger) {}
    }

    /// The replayable headers as a JSON object (first value of a repeated name wins). By hand: JSONSerialization
    /// showed in the charge profile, and this is a flat object of strings.
    static func headersJSON(_ headers: [(String, String)]) -> String {
        var seen = Set<String>()
        var out = "{"
        for (name, value) in headers where seen.insert(name).inserted {
            if out.count > 1 { out += "," }
            out += AuditEvent.quoted(name) + ":" + AuditEvent.quoted(value)
        }
        return out + "}"
    }

    /// kb_claim_and_reserve for several requests on one key, in order, in one statement (see ClaimReserveBatcher);
    /// one result each.
    func claimAndReserveMany(_ items: [ClaimReserveBatcher.Item], key: ClaimReserveBatcher.Key, logger: Logger) async throws -> [ClaimReserveResult] {
        var statement = ClaimAndReserveManyStatement(tenantId: key.tenantId, keyId: key.keyId, day: key.day, month: key.month,
                                           usageMonth: key.usageMonth, freeQuota: Int64(key.freeQuota))
        for (index, item) in items.enumerated() {
            statement.ownerIds.append(item.ownerId)
            statement.amounts.append(item.amount.micros)
            for claim in item.claims {
                statement.scopeItems.append(Int32(index + 1))
                statement.scopes.append(claim.scope)
                statement.hashes.append(claim.requestHash)
                statement.upstreamKeys.append(claim.upstreamKey ?? "")
                statement.ttls.append(Int32(clamping: claim.ttl.components.seconds))
            }
        }
        statement.pending = AuditArrays(items.map { ($0.pending, nil) })
        var results = [ClaimReserveResult?](repeating: nil, count: items.count)
        for try await (item, result, used, cap, claimed) in try await client.execute(statement, logger: logger) {
            let index = Int(item) - 1
            guard results.indices.contains(index) else { throw KeybrakeError.internalError }
            results[index] = ClaimReserveResult(result: result, used: used, cap: cap, claimed: claimed)
        }
        return try results.map { r in
            guard let r else { throw KeybrakeError.internalError }
            return r
        }
    }

    /// Turns in-flight records whose lease ran out into unknown outcomes (kb_expire_leases); returns how many held
    /// reservations it expired.
    public func expireLeases(limit: Int = 500, logger: Logger) async throws -> Int {
        for try await n in try await client.query("SELECT kb_expire_leases(\(Int32(limit)))", logger: logger).decode(Int32.self) {
            return Int(n)
        }
        return 0
    }

    /// What Keybrake already counted for a PaymentIntent or charge (its create with `confirm=true`, an earlier capture).
    public func countedFor(tenantId: String, vendor: String, objectId: String, logger: Logger) async throws -> MicroUSD {
        let rows = try await client.query("""
            SELECT counted_micros FROM priced_objects WHERE tenant_id = \(tenantId) AND vendor = \(vendor) AND object_id = \(objectId)
            """, logger: logger)
        for try await counted in rows.decode(Int64.self) { return MicroUSD(counted) }
        return .zero
    }
}

/// A response kept for idempotent replay: status, the headers worth replaying, body.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (a: StoredResponse, b: StoredResponse) -> Bool {
        a.status == b.status && a.body == b.body && a.headers.map { $0.0 + ":" + $0.1 } == b.headers.map { $0.0 + ":" + $0.1 }
    }
}
