import KeybrakeCore
import Storage

/// A handler's database call: whatever it throws comes out as the public vocabulary (`DatabaseErrors.map`: a
/// `KeybrakeError` as it is, a lost database as 503 `unavailable`, anything else as 500, logged). Every admin
/// controller calls the database through this one function.
public func db<T>(_ context: KeybrakeRequestContext, _ body: () async throws -> T) async throws(KeybrakeError) -> T {
    do { return try await body() } catch { throw DatabaseErrors.map(error, logger: context.logger) }
}
