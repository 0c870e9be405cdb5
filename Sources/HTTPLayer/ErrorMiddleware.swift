import Foundation
import Hummingbird
import KeybrakeCore
import Logging

extension HTTPField.Name {
    public static let keybrakeRequestId = HTTPField.Name("Keybrake-Request-Id")!
    public static let keybrakeErrorCode = HTTPField.Name("Keybrake-Error-Code")!
}

/// Renders every error as JSON, stamps `Keybrake-Request-Id` on every response and logs one line per request.
/// Routes that answer in a vendor's own envelope (the proxy) render their errors themselves.
public struct RequestEnvelopeMiddleware: RouterMiddleware {
    public typealias Context = KeybrakeRequestContext

    public init() {}

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            let kbError = Self.keybrakeError(from: error, logger: context.logger)
            response = AdminErrorResponse.make(kbError)
        }
        response.headers[.keybrakeRequestId] = context.requestId
        let elapsed = ContinuousClock.now - start
        // Path only: queries never carry secrets today, but headers (Authorization) must never be logged.
        context.logger.info("request", metadata: [
            "method": "\(request.method.rawValue)",
            "path": "\(request.uri.path)",
            "status": "\(response.status.code)",
            "duration_us": "\(elapsed.microseconds)",
        ])
        return response
    }

    /// Maps framework and unknown errors to the public error vocabulary.
    public static func keybrakeError(from error: any Error, logger: Logger) -> KeybrakeError {
        switch error {
        case let kb as KeybrakeError:
            return kb
        case let http as HTTPError:
            switch http.status {
            case .notFound:
                return KeybrakeError(status: 404, code: .notFound, message: "No such route. See openapi.yaml for the admin API.")
            case .contentTooLarge:
                return KeybrakeError(status: 413, code: .bodyTooLarge, message: "The request body is too large.")
            case .methodNotAllowed:
                return KeybrakeError(status: 405, code: .methodNotAllowed, message: "This method is not allowed on this route.")
            case .badRequest:
                return .invalidRequest(http.body ?? "The request is malformed.")
            default:
                return KeybrakeError(status: Int(http.status.code), code: .httpError, message: http.body ?? http.status.reasonPhrase)
            }
        default:
            logger.error("unhandled error", metadata: ["type": "\(String(describing: type(of: error)))"])
            return .internalError
        }
    }
}

/// `{"error":{"code","message","field"}}` plus `Keybrake-Error-Code` (and `Retry-After` when set).
public enum AdminErrorResponse {
    struct Body: Encodable {
        struct Detail: Encodable {
            let code: String
            let message: String
            let field: String?
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(code, forKey: .code)
                try c.encode(message, forKey: .message)
                try c.encode(field, forKey: .field)  // explicit null keeps the shape stable
            }
            enum CodingKeys: String, CodingKey { case code, message, field }
        }
        let error: Detail
    }

    public static func make(_ error: KeybrakeError) -> Response {
        let body = Body(error: .init(code: error.code, message: error.message, field: error.field))
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8", .keybrakeErrorCode: error.code]
        if let retry = error.retryAfterSeconds { headers[.retryAfter] = String(retry) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(body)) ?? Data(#"{"error":{"code":"internal_error","message":"","field":null}}"#.utf8)
        return Response(
            status: HTTPResponse.Status(code: error.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
