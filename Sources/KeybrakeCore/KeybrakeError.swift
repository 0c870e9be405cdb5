/// Every error a client can see: a stable machine code (one of `ErrorCode`), an HTTP status and a message that says
/// what to do. Rendered as JSON by HTTPLayer (admin envelope) or by the proxy (vendor envelope).
public struct KeybrakeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    /// The request field at fault, for validation errors.
    public var field: String?
    /// Seconds until the limit resets, sent as `Retry-After`.
    public var retryAfterSeconds: Int?

    public init(status: Int, code: String, message: String, field: String? = nil, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// The usual way to build one: `code` from the catalogue (`ErrorCode`), so every code the product answers with
    /// is named in one place.
    public init(status: Int, code: ErrorCode, message: String, field: String? = nil, retryAfterSeconds: Int? = nil) {
        self.init(status: status, code: code.rawValue, message: message, field: field, retryAfterSeconds: retryAfterSeconds)
    }

    public var description: String { "\(status) \(code): \(message)" }

    public static func invalidRequest(_ message: String, field: String? = nil) -> KeybrakeError {
        KeybrakeError(status: 400, code: ErrorCode.invalidRequest, message: message, field: field)
    }

    public static func notFound(_ what: String) -> KeybrakeError {
        KeybrakeError(status: 404, code: ErrorCode.notFound, message: "No \(what) with that id exists for this tenant.")
    }

    public static let adminTokenInvalid = KeybrakeError(
        status: 401, code: ErrorCode.adminTokenInvalid,
        message: "Missing or invalid admin token. Send `Authorization: Bearer kb_admin_…` as returned by POST /v1/tenants or POST /v1/admin-tokens."
    )

    public static func rateLimited(_ message: String, retryAfter: Int) -> KeybrakeError {
        KeybrakeError(status: 429, code: ErrorCode.rateLimited, message: message, retryAfterSeconds: retryAfter)
    }

    public static let unavailable = KeybrakeError(
        status: 503, code: ErrorCode.unavailable,
        message: "Keybrake cannot reach its database right now; nothing was forwarded. Retry shortly."
    )

    /// A read ran past the admin statement timeout and Postgres stopped it (DESIGN §16).
    public static let queryTimeout = KeybrakeError(
        status: 503, code: ErrorCode.queryTimeout,
        message: "This read took longer than the admin statement timeout and was stopped. Narrow the time window (from and to) or add a filter such as key_id, then retry.",
        retryAfterSeconds: 1)

    /// This replica is draining (SIGTERM): nothing was sent; another replica takes the retry.
    public static let shuttingDown = KeybrakeError(
        status: 503, code: ErrorCode.shuttingDown,
        message: "This Keybrake replica is shutting down; nothing was sent. Retry (another replica will take it).",
        retryAfterSeconds: 1)

    public static let internalError = KeybrakeError(
        status: 500, code: ErrorCode.internalError, message: "An internal error occurred; it has been logged with this request's id."
    )
}
