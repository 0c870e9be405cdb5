import HTTPLayer
import Hummingbird
import KeybrakeCore

/// Mounts the data plane: `/stripe/**`, `/twilio/**`, `/resend/**`, and host-based routing
/// (`Host: stripe.<domain>` serves Stripe at the root, for SDKs that only take a host, like stripe-node).
public struct ProxyController: Sendable {
    let pipeline: ProxyPipeline

    public init(pipeline: ProxyPipeline) { self.pipeline = pipeline }

    static let methods: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete, .head]

    public func addRoutes(to router: some RouterMethods<KeybrakeRequestContext>) {
        for vendor in Vendor.allCases {
            let prefix = "/" + vendor.rawValue
            for method in Self.methods {
                router.on("\(prefix)/**", method: method) { request, context in
                    let path = String(request.uri.path.dropFirst(prefix.count))
                    return await pipeline.handle(vendor: vendor, path: path, request: request, context: context)
                }
            }
        }
    }

    /// Middleware that sends `Host: <vendor>.<domain>` requests to the proxy before any route matching.
    public var hostRouting: HostRoutingMiddleware { HostRoutingMiddleware(pipeline: pipeline) }
}

public struct HostRoutingMiddleware: RouterMiddleware {
    public typealias Context = KeybrakeRequestContext
    let pipeline: ProxyPipeline

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let vendor = Self.vendor(forHost: request.headers[Self.hostField] ?? request.head.authority) {
            return await pipeline.handle(vendor: vendor, path: request.uri.path, request: request, context: context)
        }
        return try await next(request, context)
    }

    /// HTTP/1 servers turn `Host` into the authority; in-process requests may still carry it as a field.
    static let hostField = HTTPField.Name("Host")!

    /// `stripe.keybrake.example:8080` → stripe. A bare `stripe` (no domain) is not a vendor host.
    static func vendor(forHost host: String?) -> Vendor? {
        guard let host, let dot = host.firstIndex(of: ".") else { return nil }
        return Vendor(rawValue: host[..<dot].lowercased())
    }
}
