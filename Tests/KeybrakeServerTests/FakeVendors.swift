import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// An in-process stand-in for Stripe, Twilio and Resend that speaks their wire formats (form bodies in,
/// JSON out, vendor-shaped errors), records every request it receives and can be told to misbehave.
final class FakeVendors: Sendable {
    struct Received: Sendable {
        let method: String
        let path: String
        let query: String?
        let headers: [String: String]
        let body: String

        var form: [String: String] {
            var out: [String: String] = [:]
            for pair in body.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0) }
                if kv.count == 2 { out[kv[0]] = kv[1] }
            }
            return out
        }
    }

    enum Fault: Sendable {
        case none
        case status(Int)            // answer with this vendor error status
        case delay(Duration)        // answer late (past the proxy's upstream timeout)
    }

    let received = NIOLockedValueBox<[Received]>([])
    let fault = NIOLockedValueBox<Fault>(.none)
    let counter = NIOLockedValueBox(0)
    /// Objects the fake "created", for GET lookups (`id` → JSON object).
    let objects = NIOLockedValueBox<[String: [String: Any & Sendable]]>([:])
    /// Milliseconds each successful money-moving response takes, to widen race windows in tests.
    let latency = NIOLockedValueBox<Duration>(.zero)
    private let state = NIOLockedValueBox<(port: Int, task: Task<Void, any Error>?)>((0, nil))
    var port: Int { state.withLockedValue { $0.port } }

    func requests(path: String? = nil, method: String? = nil) -> [Received] {
        received.withLockedValue { $0.filter { (path == nil || $0.path == path) && (method == nil || $0.method == method) } }
    }

    func setFault(_ f: Fault) { fault.withLockedValue { $0 = f } }

    func start() async throws {
        let router = Router()
        router.on("/**", method: .get) { request, _ in try await self.respond(request) }
        router.on("/**", method: .post) { request, _ in try await self.respond(request) }
        router.on("/**", method: .delete) { request, _ in try await self.respond(request) }
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "fake-vendors")
        logger.logLevel = .critical
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "fake"),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0); continuation.finish() },
            logger: logger
        )
        let task = Task { try await app.runService() }
        var port = 0
        for await p in stream { port = p }
        state.withLockedValue { $0 = (port, task) }
    }

    func stop() { state.withLockedValue { $0.task?.cancel() } }

    var url: String { "http://127.0.0.1:\(port)" }

    func nextId(_ prefix: String) -> String {
        let n = counter.withLockedValue { $0 += 1; return $0 }
        return "\(prefix)_fake\(n)"
    }

    func respond(_ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 2 << 20)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let rec = Received(method: request.method.rawValue, path: request.uri.path, query: request.uri.query, headers: headers,
                           body: String(buffer: body))
        received.withLockedValue { $0.append(rec) }

        switch fault.withLockedValue({ $0 }) {
        case .none: break
        case .delay(let d): try await Task.sleep(for: d)
        case .status(let s): return error(rec, status: s)
        }
        let extra = latency.withLockedValue { $0 }
        if extra > .zero { try await Task.sleep(for: extra) }

        if rec.path.hasPrefix("/v1/") { return stripe(rec) }
        if rec.path.hasPrefix("/2010-04-01/") { return twilio(rec) }
        return resend(rec)
    }

    func json(_ status: Int, _ object: Any, headers: [String: String] = [:]) -> Response {
        var fields: HTTPFields = [.contentType: "application/json"]
        for (k, v) in headers { fields[HTTPField.Name(k)!] = v }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func error(_ rec: Received, status: Int) -> Response {
        if rec.path.hasPrefix("/v1/") {
            let (type, code) = status == 402 ? ("card_error", "card_declined") : status >= 500 ? ("api_error", "api_error") : ("invalid_request_error", "bad")
            return json(status, ["error": ["type": type, "code": code, "message": "fake \(status)"]], headers: ["Request-Id": "req_err"])
        }
        if rec.path.hasPrefix("/2010-04-01/") {
            return json(status, ["code": 21211, "message": "fake \(status)", "more_info": "https://www.twilio.com/docs/errors/21211", "status": status])
        }
        return json(status, ["statusCode": status, "name": "validation_error", "message": "fake \(status)"])
    }

    func stripe(_ rec: Received) -> Response {
        let form = rec.form
        let reqId = ["Request-Id": "req_\(counter.withLockedValue { $0 })"]
        let parts = rec.path.split(separator: "/").map(String.init)
        if rec.method == "GET", parts.count == 3, let object = objects.withLockedValue({ $0[parts[2]] }) {
            return json(200, object, headers: reqId)
        }
        if rec.method == "GET" { return json(404, ["error": ["type": "invalid_request_error", "code": "resource_missing", "message": "No such object"]]) }
        var object: [String: Any & Sendable] = [:]
        for (k, v) in form { object[k] = v }
        if let amount = form["amount"].flatMap(Int.init) { object["amount"] = amount }
        switch parts.count >= 2 ? parts[1] : "" {
        case "charges": object["id"] = nextId("ch"); object["object"] = "charge"; object["amount_refunded"] = 0
        case "payment_intents" where parts.count == 2:
            object["id"] = nextId("pi"); object["object"] = "payment_intent"
            object["status"] = form["confirm"] == "true" ? "succeeded" : "requires_confirmation"
        case "payment_intents":
            var existing = objects.withLockedValue { $0[parts[2]] } ?? [:]
            existing["status"] = "succeeded"
            object = existing
        case "refunds": object["id"] = nextId("re"); object["object"] = "refund"
        case "customers": object["id"] = nextId("cus"); object["object"] = "customer"
        default: object["id"] = nextId("obj")
        }
        if let id = object["id"] as? String { objects.withLockedValue { $0[id] = object } }
        return json(200, object, headers: reqId)
    }

    func twilio(_ rec: Received) -> Response {
        let form = rec.form
        let sid = rec.path.split(separator: "/").dropFirst(2).first.map(String.init) ?? ""
        return json(201, ["sid": nextId("SM"), "account_sid": sid, "to": form["To"] ?? "", "from": form["From"] ?? "",
                          "body": form["Body"] ?? "", "status": "queued", "price": NSNull(), "price_unit": "USD"],
                    headers: ["Twilio-Request-Id": "RQ\(counter.withLockedValue { $0 })"])
    }

    func resend(_ rec: Received) -> Response {
        if rec.path == "/emails/batch" {
            let count = ((try? JSONSerialization.jsonObject(with: Data(rec.body.utf8))) as? [Any])?.count ?? 0
            return json(200, ["data": (0..<count).map { _ in ["id": nextId("em")] }])
        }
        return json(200, ["id": nextId("em")])
    }
}
