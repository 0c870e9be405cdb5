import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Storage

extension DashboardController {
    /// A database call: errors mapped to the public vocabulary, time added to the page's `Server-Timing: db`.
    func db<T>(_ context: KeybrakeRequestContext, _ body: () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        defer { ServerTiming.current?.addDatabase(ContinuousClock.now - start) }
        return try await HTTPLayer.db(context, body)
    }
}
