import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A vendor fake that reads requests the way the vendors' servers do — as permissively as they may — and counts the
/// money it moved, for the differential test. Stripe (a Rack app): parameters from the query string *and* the body
/// of every method, one bucket, the body winning a clash and the last repeated name winning; `&` and `;` both split
/// (older Rack); names normalised as Rack does (`[amount]` and `amount]` are `amount`); form, multipart and untyped
/// bodies parsed alike. Twilio: form parameters, query and body. Resend: JSON. Credential endpoints answer with the
/// secrets the real vendors hand out.
final class ReadingVendors: Sendable {
    /// Money moved, in micro-USD (Stripe minor units × 10,000; a Twilio message at $0.0083; a Resend email at $0.0009).
    let movedMicros = NIOLockedValueBox<Int64>(0)
    let requests = NIOLockedValueBox(0)
    let twilioToken: String
    private let state = NIOLockedValueBox<(port: Int, task: Task<Void, any Error>?)>((0, nil))
    var url: String { "http://127.0.0.1:\(state.withLockedValue { $0.port })" }

    init(twilioToken: String) { self.twilioToken = twilioToken }

    func start() async throws {
        let router = Router()
        for method in [HTTPRequest.Method.get, .post, .delete, .patch, .put] {
            router.on("/**", method: method) { request, _ in try await self.respond(request) }
        }
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "reading-vendors")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "reading"),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0); continuation.finish() }, logger: logger)
        let task = Task { try await app.runService() }
        var port = 0
        for await p in stream { port = p }
        state.withLockedValue { $0 = (port, task) }
    }

    func stop() { state.withLockedValue { $0.task?.cancel() } }

    func respond(_ request: Request) async throws -> Response {
        requests.withLockedValue { $0 += 1 }
        let body = Data(buffer: try await request.body.collect(upTo: 4 << 20))
        let path = request.uri.path
        let method = request.method.rawValue
        var params = Self.rackParse(request.uri.query ?? "")
        let type = request.headers[.contentType]?.lowercased() ?? ""
        if type.hasPrefix("multipart/form-data") {
            params.merge(Self.multipart(body, contentType: type)) { $1 }
        } else if type.hasPrefix("application/json") {
            if let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] {
                for (k, v) in object { params[k] = "\(v)" }
            }
        } else {
            params.merge(Self.rackParse(String(decoding: body, as: UTF8.self))) { $1 }
        }
        if path.hasPrefix("/v1/") { return stripe(method, path, params) }
        if path.hasPrefix("/2010-04-01/") { return twilio(method, path, params) }
        return resend(method, path, body)
    }

    func move(_ micros: Int64) { movedMicros.withLockedValue { $0 += micros } }

    func json(_ object: [String: Any], status: Int = 200) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return Response(status: .init(code: status), headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func stripe(_ method: String, _ path: String, _ p: [String: String]) -> Response {
        let cents = p["amount"].flatMap { Int64($0) } ?? 0
        let s = path.split(separator: "/")
        switch (method, s.count > 1 ? String(s[1]) : "", s.count) {
        case ("POST", "charges", 2), ("POST", "refunds", 2): move(cents * 10_000)
        case ("POST", "payment_intents", 2) where Self.truthy(p["confirm"]): move(cents * 10_000)
        case ("DELETE", "subscriptions", 3) where Self.truthy(p["invoice_now"]): move(500 * 1_000_000)
        case ("DELETE", "subscription_items", 3) where p["proration_behavior"] == "always_invoice": move(200 * 1_000_000)
        case ("POST", "webhook_endpoints", _), ("GET", "webhook_endpoints", _):
            return json(["id": "we_1", "object": "webhook_endpoint", "secret": "whsec_vendorhandedout123456"])
        default: break
        }
        return json(["id": "obj_\(requests.withLockedValue { $0 })", "object": String(s.dropFirst().first ?? ""), "amount": cents])
    }

    func twilio(_ method: String, _ path: String, _ p: [String: String]) -> Response {
        if path.hasSuffix("/Messages.json"), method == "POST" {
            move(8_300)
            return json(["sid": "SM1", "status": "queued", "price": NSNull(), "body": p["Body"] ?? ""], status: 201)
        }
        // The Account resource (and the list of them) carry the account's auth token.
        if path == "/2010-04-01/Accounts.json" {
            return json(["accounts": [["sid": "AC1", "auth_token": twilioToken], ["sid": "AC2", "auth_token": "subaccounttoken0123456789abcdef"]]])
        }
        if path.split(separator: "/").count == 3 {
            return json(["sid": "AC1", "auth_token": twilioToken, "friendly_name": "main"])
        }
        if path.contains("/Keys") { return json(["sid": "SK1", "secret": "keysecret0123456789abcdef"], status: method == "POST" ? 201 : 200) }
        return json(["sid": "XX1", "note": "nothing secret here"])
    }

    func resend(_ method: String, _ path: String, _ body: Data) -> Response {
        if method == "POST", path == "/emails" { move(900); return json(["id": "em_1"]) }
        if method == "POST", path == "/emails/batch" {
            let count = ((try? JSONSerialization.jsonObject(with: body)) as? [Any])?.count ?? 0
            move(Int64(900 * count))
            return json(["data": (0..<count).map { _ in ["id": "em"] }])
        }
        if path.hasPrefix("/api-keys") { return json(["id": "k1", "token": "re_brandnewfullaccess1234567"]) }
        return json(["id": "x1"])
    }

    static func truthy(_ value: String?) -> Bool { value.map { $0.lowercased() == "true" } ?? false }

    /// Rack 2's `parse_nested_query` with its default separators, flattened to `name[key]` strings.
    static func rackParse(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for piece in text.split(whereSeparator: { $0 == "&" || $0 == ";" }) {
            let pair = piece.drop { $0 == " " }
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = unescape(String(parts[0])), value = parts.count > 1 ? unescape(String(parts[1])) : ""
            guard let key = rackKey(name) else { continue }
            out[key] = value
        }
        return out
    }

    /// `[amount]`, `]]amount`, `amount]` → `amount`; `metadata[a]` stays.
    static func rackKey(_ name: String) -> String? {
        let trimmed = name.drop { $0 == "[" || $0 == "]" }
        guard let end = trimmed.firstIndex(where: { $0 == "[" || $0 == "]" }) else { return trimmed.isEmpty ? nil : String(trimmed) }
        let base = String(trimmed[..<end])
        let rest = trimmed[end...]
        if rest.allSatisfy({ $0 == "]" }) { return base }
        return base + rest
    }

    static func unescape(_ s: String) -> String {
        (s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding) ?? s
    }

    static func multipart(_ body: Data, contentType: String) -> [String: String] {
        guard let b = contentType.range(of: "boundary=") else { return [:] }
        let boundary = "--" + contentType[b.upperBound...].trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
        var out: [String: String] = [:]
        for part in String(decoding: body, as: UTF8.self).components(separatedBy: boundary) {
            guard let nameStart = part.range(of: "name=\""), let headEnd = part.range(of: "\r\n\r\n") else { continue }
            let name = part[nameStart.upperBound...].prefix { $0 != "\"" }
            var value = String(part[headEnd.upperBound...])
            if value.hasSuffix("\r\n") { value.removeLast() }  // "\r\n" is one Character
            if let key = rackKey(String(name)) { out[key] = value }
        }
        return out
    }
}
