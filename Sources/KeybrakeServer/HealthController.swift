import Foundation
import HTTPLayer
import Hummingbird
import Logging
import Storage

/// Liveness and readiness (database reachable); no auth. Metrics: `MetricsController`.
struct HealthController: Sendable {
    let postgres: DatabasePool
    let drain: Drain

    func addRoutes(to router: some RouterMethods<KeybrakeRequestContext>) {
        router.get("/health") { _, _ in try JSONResponse.make(.ok, ["status": "ok"]) }
        router.get("/ready") { _, context in
            if let (reason, message) = drain.notReady { return try Self.notReady(reason, message) }
            guard await databaseReachable(logger: context.logger) else {
                return try Self.notReady(.databaseUnreachable, "The database did not answer SELECT 1 within 2 s.")
            }
            return try JSONResponse.make(.ok, ["status": "ready"])
        }
    }

    /// 503 with the reason a load balancer or an operator reads (README "Operations").
    static func notReady(_ reason: Drain.Reason, _ message: String) throws -> Response {
        var response = try JSONResponse.make(.serviceUnavailable, ["status": "not_ready", "reason": reason.rawValue, "message": message])
        response.headers[.keybrakeErrorCode] = Drain.refusal(reason, message).code
        response.headers[.retryAfter] = "1"
        return response
    }

    /// `SELECT 1` within two seconds.
    func databaseReachable(logger: Logger) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await postgres.query("SELECT 1", logger: logger)
                    return true
                } catch { return false }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(2))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}
