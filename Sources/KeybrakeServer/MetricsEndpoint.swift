import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Logging
import Prometheus
import ServiceLifecycle

/// Where `GET /metrics` is served (DESIGN §9): it shows every tenant's traffic, so never beside the public API
/// unauthenticated. `KEYBRAKE_METRICS_TOKEN` serves it on the public port to `Authorization: Bearer <token>` only;
/// `KEYBRAKE_METRICS_ADDRESS` serves it on a listener of its own (a private interface or port). With neither,
/// the public port answers 404. The token, when set, is required on both.
public struct MetricsSettings: Sendable {
    public var token: String?
    public var address: (host: String, port: Int)?

    public init(token: String? = nil, address: (host: String, port: Int)? = nil) {
        self.token = token
        self.address = address
    }

    /// `host:port`, `[v6]:port`; nil if it is neither.
    public static func parseAddress(_ text: String) -> (host: String, port: Int)? {
        let host: Substring, portText: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
        return (String(host), port)
    }
}

/// The Prometheus text, behind the token when one is set.
struct MetricsController: Sendable {
    let registry: PrometheusCollectorRegistry
    let token: String?

    static let unauthorized = KeybrakeError(status: 401, code: .metricsTokenInvalid,
        message: "GET /metrics needs `Authorization: Bearer <KEYBRAKE_METRICS_TOKEN>`.")

    func addRoutes(to router: some RouterMethods<KeybrakeRequestContext>) {
        router.get("/metrics") { request, _ in try self.metrics(request) }
    }

    func metrics(_ request: Request) throws -> Response {
        if let token {
            guard let presented = BearerToken.from(request.headers), Self.matches(presented, token) else { throw Self.unauthorized }
        }
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                        body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }

    /// Constant time: every byte of the token is compared whatever the presented value, so the time says nothing
    /// about how much of it matched.
    static func matches(_ presented: String, _ token: String) -> Bool {
        let a = Array(presented.utf8), b = Array(token.utf8)
        var diff: UInt8 = a.count == b.count ? 0 : 1
        for i in 0..<b.count { diff |= (i < a.count ? a[i] : 0) ^ b[i] }
        return diff == 0
    }
}

/// The metrics listener of `KEYBRAKE_METRICS_ADDRESS`: only `/metrics` (and `/health`), nothing of the API.
func buildMetricsListener(_ settings: MetricsSettings, registry: PrometheusCollectorRegistry, logger: Logger) -> (any Service)? {
    guard let address = settings.address else { return nil }
    let router = Router(context: KeybrakeRequestContext.self)
    router.add(middleware: RequestEnvelopeMiddleware())
    router.get("/health") { _, _ in try JSONResponse.make(.ok, ["status": "ok"]) }
    MetricsController(registry: registry, token: settings.token).addRoutes(to: router)
    return Application(router: router, configuration: .init(address: .hostname(address.host, port: address.port), serverName: "keybrake-metrics"),
                       logger: logger)
}
