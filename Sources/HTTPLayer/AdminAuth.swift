import Hummingbird
import KeybrakeCore

/// Turns an admin bearer token into an identity. Defined here, implemented by Tenants,
/// so feature modules can require admin auth without knowing how tokens are stored.
public protocol AdminAuthenticator: Sendable {
    /// `request` says who presents the token (its client address counts failed attempts).
    func authenticate(token: String, request: Request, context: KeybrakeRequestContext) async throws(KeybrakeError) -> AdminIdentity
}

/// Requires `Authorization: Bearer kb_admin_…` on every route it guards.
public struct AdminAuthMiddleware: RouterMiddleware {
    public typealias Context = KeybrakeRequestContext
    let authenticator: any AdminAuthenticator

    public init(authenticator: any AdminAuthenticator) { self.authenticator = authenticator }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let token = BearerToken.from(request.headers) else { throw KeybrakeError.adminTokenInvalid }
        var context = context
        let identity = try await authenticator.authenticate(token: token, request: request, context: context)
        context.admin = identity
        context.logger[metadataKey: "tenant_id"] = .string(identity.tenantId)
        return try await next(request, context)
    }
}

public enum BearerToken {
    /// The token from `Authorization: Bearer <token>` (scheme case-insensitive).
    public static func from(_ headers: HTTPFields) -> String? {
        guard let value = headers[.authorization] else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }
}
