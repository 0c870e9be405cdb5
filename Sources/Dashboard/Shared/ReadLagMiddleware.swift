import HTTPLayer
import HTTPTypes
import Hummingbird
import Storage

extension HTTPField.Name {
    /// Seconds a read answer may be behind the primary: 0 from the primary or a standby that has replayed all it
    /// received; more while it catches up (docs/operations.md "High availability").
    public static let keybrakeReadLag = HTTPField.Name("Keybrake-Read-Lag")!
    /// `standby` or `primary`: where the answer's reads ran.
    public static let keybrakeReadFrom = HTTPField.Name("Keybrake-Read-From")!
}

/// Admin and dashboard requests only (never the proxy: a task-local binding per request costs the hot path): says in
/// the answer's headers where its admin reads ran and how stale they may be.
public struct ReadLagMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let lag = ReadLag()
        var response = try await ReadLag.$current.withValue(lag) { try await next(request, context) }
        switch lag.source {
        case .primary?:
            response.headers[.keybrakeReadLag] = "0"
            response.headers[.keybrakeReadFrom] = "primary"
        case .standby(let seconds)?:
            response.headers[.keybrakeReadLag] = String(format: "%.3f", seconds)
            response.headers[.keybrakeReadFrom] = "standby"
        case nil:
            break
        }
        return response
    }
}
