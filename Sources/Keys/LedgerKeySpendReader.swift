import Audit
import Foundation
import HTTPLayer
import KeybrakeCore

/// `GET /v1/keys/{id}`'s spend (and the dashboard key page's): the key's day, month and whole life, read from the
/// ledger in the key's own time zone.
public struct LedgerKeySpendReader: KeySpendReader {
    let spend: SpendRepository

    public init(spend: SpendRepository) { self.spend = spend }

    public func spend(of key: VaultKey, now: Date, context: KeybrakeRequestContext) async throws -> KeySpend {
        let periods = KeyCalendar.periods(now: now, timezone: key.policy.timezone)
        let (day, month) = (periods.day, periods.month)
        let (d, m, t) = try await spend.key(tenantId: key.tenantId, keyId: key.id, day: day, month: month, logger: context.logger)
        return KeySpend(
            today: .init(start: day, settled: d.settled, reserved: d.reserved, unknown: d.unknown, cap: key.policy.dailyCap),
            month: .init(start: month, settled: m.settled, reserved: m.reserved, unknown: m.unknown, cap: key.policy.monthlyCap),
            total: .init(start: KeyCalendar.periods(now: key.createdAt, timezone: key.policy.timezone).day, settled: t.settled, reserved: t.reserved, unknown: t.unknown, cap: key.policy.totalCap)
        )
    }
}
