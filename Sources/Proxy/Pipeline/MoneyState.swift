import Audit
import KeybrakeCore

/// The money state of one proxied request, and every way it may move (DESIGN §7). One value in the request's
/// working state replaces the flags the holes used to live between.
///
/// | from \ event   | 2xx           | final 4xx (400 402 404 422) | other 4xx (401 403 409 429 …) | 5xx, timeout, lost answer | never sent (refused, DNS, TLS, connect timeout) | denied before forwarding |
/// |----------------|---------------|-----------------------------|-------------------------------|---------------------------|------------------------------------------------|--------------------------|
/// | `.open`        | settled       | released                    | released                      | unknown                   | released                                       | released                 |
/// | `.reserved`    | settled       | released                    | released                      | unknown                   | released                                       | released                 |
/// | `.resuming`    | settled       | unknown (kept)              | unknown (kept)                | unknown (kept)            | unknown (kept)                                 | unknown (kept)           |
///
/// - `.open`: nothing reserved (a request that moves no money, or one priced at 0); it may hold idempotency records.
/// - `.reserved`: this request's own reservation is held, and its records are claimed.
/// - `.resuming`: a retry took over an earlier request's *unknown* outcome (only where the vendor deduplicates on the
///   same upstream Idempotency-Key: Stripe, Resend; only by the vault key that reserved it). The earlier request's
///   reservation is held for it. Its 2xx settles that reservation; nothing else says anything about the first
///   attempt, so the records go back to `unknown` under the earlier request's audit id and the amount stays counted.
/// - `unknown` is left only by a later 2xx retry (above) or by the tenant resolving it (`POST /v1/audit/{id}/resolve`).
///
/// Records: a 2xx and a final 4xx are stored and replayed under the same Idempotency-Key; only a 2xx is replayed to a
/// duplicate fingerprint; anything else is dropped so the next attempt reaches the vendor.
enum MoneyState: Sendable, Equatable {
    case open
    case reserved(reservationId: String, amount: MicroUSD)
    case resuming(earlierAuditId: String, reservationId: String?)

    /// What the upstream said (or that it never heard the request).
    enum Upstream: Sendable, Equatable {
        case answered(status: Int)
        /// Timeout or connection failure after the request may have reached the vendor.
        case lost
        /// The connection was never made (refused, DNS, TLS handshake, connect timeout): nothing reached the vendor.
        case notSent
        /// Keybrake refused the request before forwarding it.
        case denied
    }

    /// What happens to the reservation.
    enum Reservation: Sendable, Equatable {
        case none
        case settle(String)
        case release(String)
        case markUnknown(String)
    }

    /// What happens to the request's idempotency records.
    enum Records: Sendable, Equatable {
        /// Completed with the response: replayed to the same key (and, for a 2xx, to a duplicate fingerprint).
        case complete(replayToDuplicates: Bool)
        /// Left `unknown`: a retry may resume it (or gets 409 `outcome_unknown`).
        case unknown
        /// Given back to the earlier request whose outcome is still unknown.
        case restoreUnknown(earlierAuditId: String)
        /// Dropped: the next identical request goes upstream.
        case drop
    }

    struct Transition: Sendable, Equatable {
        var reservation: Reservation
        var records: Records
        /// The audit outcome of this request's own row.
        var outcome: AuditEvent.Outcome?
    }

    /// Statuses that say the request itself is wrong: final, stored and replayed as the vendors do.
    static func isFinalRefusal(_ status: Int) -> Bool { status == 400 || status == 402 || status == 404 || status == 422 }

    /// The one transition table above.
    func after(_ upstream: Upstream) -> Transition {
        switch (self, upstream) {
        case (.resuming(_, let r), .answered(let s)) where (200..<300).contains(s):
            return Transition(reservation: r.map { .settle($0) } ?? .none, records: .complete(replayToDuplicates: true), outcome: r == nil ? nil : .settled)
        case (.resuming(let earlier, let r), _):
            return Transition(reservation: r.map { .markUnknown($0) } ?? .none, records: .restoreUnknown(earlierAuditId: earlier),
                              outcome: r == nil ? nil : .outcomeUnknown)
        case (_, .answered(let s)) where (200..<300).contains(s):
            return Transition(reservation: reservationId.map { .settle($0) } ?? .none, records: .complete(replayToDuplicates: true),
                              outcome: reservationId == nil ? nil : .settled)
        case (_, .answered(let s)) where s >= 500:
            return unknownTransition
        case (_, .answered(let s)) where Self.isFinalRefusal(s):
            return Transition(reservation: reservationId.map { .release($0) } ?? .none, records: .complete(replayToDuplicates: false),
                              outcome: reservationId == nil ? nil : .released)
        case (_, .answered):
            return releaseTransition
        case (_, .lost):
            return unknownTransition
        case (_, .notSent), (_, .denied):
            return releaseTransition
        }
    }

    private var reservationId: String? {
        if case .reserved(let id, _) = self { return id }
        return nil
    }

    private var unknownTransition: Transition {
        Transition(reservation: reservationId.map { .markUnknown($0) } ?? .none, records: .unknown,
                   outcome: reservationId == nil ? nil : .outcomeUnknown)
    }

    private var releaseTransition: Transition {
        Transition(reservation: reservationId.map { .release($0) } ?? .none, records: .drop,
                   outcome: reservationId == nil ? nil : .released)
    }
}
