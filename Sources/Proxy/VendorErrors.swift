import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore

extension HTTPField.Name {
    static let stripeShouldRetry = HTTPField.Name("Stripe-Should-Retry")!
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!
    static let keybrakeDuplicateOf = HTTPField.Name("Keybrake-Duplicate-Of")!
    static let keybrakeIdempotencyKey = HTTPField.Name("Keybrake-Idempotency-Key")!
    static let keybrakeKey = HTTPField.Name("X-Keybrake-Key")!
    static let keybrakeRunId = HTTPField.Name("X-Keybrake-Run-Id")!
    static let stripeAccount = HTTPField.Name("Stripe-Account")!
    static let stripeContext = HTTPField.Name("Stripe-Context")!
}

/// Renders Keybrake errors in each vendor's own error envelope, so the official SDK raises its usual
/// exception carrying our message (DESIGN §8).
enum VendorErrorRenderer {
    /// Codes a client may retry (and should: it then gets the replay or the settled outcome).
    static let retryable: Set<String> = ["idempotency_key_in_use", "duplicate_in_flight", "unavailable", "upstream_error", "upstream_timeout",
                                         "upstream_unreachable", "shutting_down", "upstream_busy"]

    static func response(_ error: KeybrakeError, vendor: Vendor) -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8", .keybrakeErrorCode: error.code]
        if let retry = error.retryAfterSeconds { headers[.retryAfter] = String(retry) }
        if !retryable.contains(error.code) { headers[.stripeShouldRetry] = "false" }
        let body: [String: Any]
        switch vendor {
        case .stripe:
            let type = switch error.code {
            case "idempotency_key_reused": "idempotency_error"
            case _ where error.status == 429: "rate_limit_error"
            case _ where error.status >= 500: "api_error"
            default: "invalid_request_error"
            }
            body = ["error": ["type": type, "code": error.code, "message": error.message]]
        case .twilio:
            // Twilio error codes are integers; ours rides in the message and the header.
            let code = switch error.status {
            case 401: 20003
            case 403: 20403
            case 404: 20404
            case 429: 20429
            case 413: 21617
            case 409: 20409
            case _ where error.status >= 500: 20500
            default: 21400
            }
            body = ["code": code, "message": "\(error.message) [\(error.code)]", "status": error.status,
                    "more_info": "keybrake:\(error.code)"]
        case .resend:
            body = ["statusCode": error.status, "name": error.code, "message": error.message]
        }
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Response(status: HTTPResponse.Status(code: error.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
