import Hummingbird
import KeybrakeCore
import NIOCore

/// Who an admin request acts for, set by `AdminAuthMiddleware`.
public struct AdminIdentity: Sendable, Equatable {
    public let tenantId: String
    public let tokenId: String
    public init(tenantId: String, tokenId: String) {
        self.tenantId = tenantId
        self.tokenId = tokenId
    }
}

/// The one request context of the server: request id, client address, admin identity.
public struct KeybrakeRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// `req_…`, returned as `Keybrake-Request-Id` and attached to every log line of the request.
    public var requestId: String
    public var admin: AdminIdentity?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
        self.requestId = Identifier.make("req")
        self.admin = nil
        self.logger[metadataKey: "request_id"] = .string(requestId)
    }

    /// Admin JSON bodies are small; the proxy sets its own (larger) limit.
    public var maxUploadSize: Int { 64 * 1024 }

    /// The authenticated tenant, or 401 if the route was reached without admin auth.
    public func requireAdmin() throws(KeybrakeError) -> AdminIdentity {
        guard let admin else { throw KeybrakeError.adminTokenInvalid }
        return admin
    }
}
