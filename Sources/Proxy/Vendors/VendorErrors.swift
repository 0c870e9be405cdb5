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
    static let keybrakeRunId = HTTPField.Name("X-Keybrake-Run-Id")!
}

/// Renders Keybrake errors around each vendor's own error envelope (the adapter's `errorEnvelope`), so the official
/// SDK raises its usual exception carrying our message (DESIGN §8).
enum VendorErrorRenderer {
    /// Codes a client may retry (and should: it then gets the replay or the settled outcome).
    static let retryable: Set<String> = ["idempotency_key_in_use", "duplicate_in_flight", "unavailable", "upstream_error", "upstream_timeout",
                                         "upstream_unreachable", "shutting_down", "upstream_busy"]

    /// The headers every vendor's error carries (the code, a retry hint) around the adapter's envelope.
    static func response(_ error: KeybrakeError, envelope: [String: Any]) -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8", .keybrakeErrorCode: error.code]
        if let retry = error.retryAfterSeconds { headers[.retryAfter] = String(retry) }
        if !retryable.contains(error.code) { headers[.stripeShouldRetry] = "false" }
        let data = (try? JSONSerialization.data(withJSONObject: envelope, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Response(status: HTTPResponse.Status(code: error.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
