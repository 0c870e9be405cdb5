import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Mustache
import NIOConcurrencyHelpers

extension String {
    func nonEmptyOr(_ fallback: String) -> String { isEmpty ? fallback : self }
}

extension HTTPField.Name {
    static let xForwardedProto = HTTPField.Name("X-Forwarded-Proto")!
    static let forwarded = HTTPField.Name("Forwarded")!
    static let serverTiming = HTTPField.Name("Server-Timing")!
    static let xFrameOptions = HTTPField.Name("X-Frame-Options")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
}

/// Thrown by any page that needs a session when there is none: the middleware answers 303 to the sign-in page.
struct SignInRequired: Error {}

/// Renders a named template and records how long rendering took (`Server-Timing: render`).
struct Renderer: Sendable {
    let library: MustacheLibrary

    func render(_ name: String, _ view: Any, status: HTTPResponse.Status = .ok) -> Response {
        let start = ContinuousClock.now
        let html = library.render(ViewTree.convert(view) ?? [String: Any](), withTemplate: name) ?? ""
        var response = Page.html(html, status: status)
        response.headers[.serverTiming] = "render;dur=" + ServerTiming.milliseconds(ContinuousClock.now - start)
        return response
    }
}

/// Turns a view model into dictionaries and arrays once, up front. Mustache would otherwise reflect a struct
/// (`Mirror`) on every `{{name}}` lookup, which dominates render time on a page with many rows.
enum ViewTree {
    static func convert(_ value: Any) -> Any? {
        switch value {
        case let v as String: return v
        case let v as Bool: return v
        case let v as Int: return v
        case let v as Int64: return v
        case let v as Double: return v
        case let v as [Any]: return v.compactMap(convert)
        case let v as MustacheParent: return v  // answers lookups itself, without reflection
        default:
            let mirror = Mirror(reflecting: value)
            switch mirror.displayStyle {
            case .optional?:
                return mirror.children.first.flatMap { convert($0.value) }
            case .struct?, .class?:
                var fields: [String: Any] = [:]
                for child in mirror.children {
                    if let label = child.label, let v = convert(child.value) { fields[label] = v }
                }
                return fields
            default:
                return value
            }
        }
    }
}

/// Per-request timings for the `Server-Timing` header (database time is summed over the request's queries).
final class ServerTiming: Sendable {
    @TaskLocal static var current: ServerTiming?

    private let database = NIOLockedValueBox(Duration.zero)
    func addDatabase(_ d: Duration) { database.withLockedValue { $0 += d } }
    var databaseTime: Duration { database.withLockedValue { $0 } }

    static func milliseconds(_ d: Duration) -> String {
        let ms = d.timeInterval * 1000
        return String(format: "%.2f", ms)
    }
}

/// Around every /dashboard route: HTML errors (never the admin API's JSON), the sign-in redirect, security headers,
/// and `Server-Timing: total;dur=…` — the server-side time of the whole page, from session lookup to rendered HTML.
struct DashboardMiddleware: RouterMiddleware {
    typealias Context = KeybrakeRequestContext
    let renderer: Renderer

    /// No inline script or style anywhere: bars are SVG attributes, behaviour lives in /dashboard/assets.
    static let contentSecurityPolicy =
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let timing = ServerTiming()
        var response: Response
        do {
            response = try await ServerTiming.$current.withValue(timing) { try await next(request, context) }
        } catch is SignInRequired {
            response = Page.redirect("/dashboard/login")
        } catch {
            let kb = RequestEnvelopeMiddleware.keybrakeError(from: error, logger: context.logger)
            let heading = switch kb.status {
            case 404: "Not found"
            case 403: "Not allowed"
            case 400, 409, 413: "That did not work"
            default: "Something went wrong"
            }
            response = renderer.render("error", ErrorView(chrome: nil, heading: heading, message: kb.message), status: HTTPResponse.Status(code: kb.status))
            response.headers[.keybrakeErrorCode] = kb.code
        }
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "same-origin"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        let total = "db;dur=" + ServerTiming.milliseconds(timing.databaseTime) + ", total;dur=" + ServerTiming.milliseconds(ContinuousClock.now - start)
        if let render = response.headers[.serverTiming] {
            response.headers[.serverTiming] = render + ", " + total
        } else {
            response.headers[.serverTiming] = total
        }
        return response
    }
}
