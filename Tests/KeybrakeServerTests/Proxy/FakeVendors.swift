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

    enum Fault: Sendable, Equatable {
        case none
        case status(Int)            // answer with this vendor error status (nothing done)
        case delay(Duration)        // answer late (past the proxy's upstream timeout), having done it
        case actThenStatus(Int)     // do it (money moves), then answer with this error: the answer is lost
    }

    /// One execution that moved money at the vendor.
    struct Movement: Sendable {
        let path: String
        let amount: Int            // minor units (Stripe), micro-USD (Twilio, Resend)
        let operation: String?     // `metadata[op]` (Stripe) / Body (Twilio): what the agent meant to do once
        let account: String?       // Stripe-Account
        let vault: String?         // X-Test-Vault: which vault key's request made it (tests label their requests)
    }

    let received = NIOLockedValueBox<[Received]>([])
    let fault = NIOLockedValueBox<Fault>(.none)
    let counter = NIOLockedValueBox(0)
    /// Objects the fake "created", for GET lookups (`id` → JSON object).
    let objects = NIOLockedValueBox<[String: [String: Any & Sendable]]>([:])
    /// Milliseconds each successful money-moving response takes, to widen race windows in tests.
    let latency = NIOLockedValueBox<Duration>(.zero)
    /// Faults for the next requests that move money, in order (then `fault`).
    let faultQueue = NIOLockedValueBox<[Fault]>([])
    /// What really moved, as the vendor would report it.
    let movements = NIOLockedValueBox<[Movement]>([])
    /// Stripe and Resend keep the first result per Idempotency-Key (24 h) and replay it; Twilio has no idempotency.
    let idempotent = NIOLockedValueBox<[String: (status: Int, body: Data)]>([:])
    /// The price Twilio reports in the Message resource (`nil`: null, as Twilio answers before delivery).
    let twilioPrice = NIOLockedValueBox<String?>(nil)
    /// Fields added to every JSON object answer: a vendor handing out secrets where it should not.
    let leakedFields = NIOLockedValueBox<[String: String]>([:])

    /// While true, every request waits here after it is recorded (no clock involved): tests fill the proxy's
    /// upstream connection budget with requests that stay in flight until they open the gate.
    let held = NIOLockedValueBox(false)

    var moved: [Movement] { movements.withLockedValue { $0 } }
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
        while held.withLockedValue({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }

        var current = fault.withLockedValue { $0 }
        if rec.method == "POST" {
            current = faultQueue.withLockedValue { queue in queue.isEmpty ? current : queue.removeFirst() }
        }
        // A refusal comes before the vendor looks at its idempotency store (Stripe's 409 for a key in use, a 429).
        switch current {
        case .none, .actThenStatus: break
        case .delay: break
        case .status(let s): return error(rec, status: s).response
        }
        let vendorKey = rec.path.hasPrefix("/2010-04-01/") ? nil : rec.headers["idempotency-key"].map { "\(rec.headers["stripe-account"] ?? "")|\($0)" }
        if rec.method == "POST", let vendorKey, let stored = idempotent.withLockedValue({ $0[vendorKey] }) {
            return Response(status: .init(code: stored.status), headers: [.contentType: "application/json", HTTPField.Name("Idempotent-Replayed")!: "true"],
                            body: .init(byteBuffer: ByteBuffer(bytes: stored.body)))
        }
        let extra = latency.withLockedValue { $0 }
        if extra > .zero { try await Task.sleep(for: extra) }

        let reply: Reply
        if rec.path.hasPrefix("/v1/") { reply = stripe(rec) } else if rec.path.hasPrefix("/2010-04-01/") { reply = twilio(rec) } else { reply = resend(rec) }
        if rec.method == "POST", let vendorKey { idempotent.withLockedValue { $0[vendorKey] = (reply.status, reply.data) } }
        if case .actThenStatus(let s) = current { return error(rec, status: s).response }
        if case .delay(let d) = current { try await Task.sleep(for: d) }
        return reply.response
    }

    func move(_ rec: Received, amount: Int) {
        movements.withLockedValue {
            $0.append(Movement(path: rec.path, amount: amount, operation: rec.form["metadata[op]"] ?? rec.form["Body"],
                               account: rec.headers["stripe-account"], vault: rec.headers["x-test-vault"]))
        }
    }

    /// A vendor answer before it becomes a Response (the body is kept for the vendor's own idempotency replay).
    struct Reply {
        var status: Int
        var headers: HTTPFields
        var data: Data
        var response: Response { Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data))) }
    }

    func json(_ status: Int, _ object: Any, headers: [String: String] = [:]) -> Reply {
        var fields: HTTPFields = [.contentType: "application/json"]
        for (k, v) in headers { fields[HTTPField.Name(k)!] = v }
        var object = object
        if var dict = object as? [String: Any] {
            for (k, v) in leakedFields.withLockedValue({ $0 }) { dict[k] = v }
            object = dict
        }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Reply(status: status, headers: fields, data: data)
    }

    func error(_ rec: Received, status: Int) -> Reply {
        if rec.path.hasPrefix("/v1/") {
            let (type, code) = status == 402 ? ("card_error", "card_declined") : status >= 500 ? ("api_error", "api_error") : ("invalid_request_error", "bad")
            return json(status, ["error": ["type": type, "code": code, "message": "fake \(status)"]], headers: ["Request-Id": "req_err"])
        }
        if rec.path.hasPrefix("/2010-04-01/") {
            return json(status, ["code": 21211, "message": "fake \(status)", "more_info": "https://www.twilio.com/docs/errors/21211", "status": status])
        }
        return json(status, ["statusCode": status, "name": "validation_error", "message": "fake \(status)"])
    }

    func stripe(_ rec: Received) -> Reply {
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
        let amount = form["amount"].flatMap(Int.init) ?? 0
        switch parts.count >= 2 ? parts[1] : "" {
        case "charges" where parts.count == 2:
            object["id"] = nextId("ch"); object["object"] = "charge"; object["amount_refunded"] = 0
            move(rec, amount: amount)
        case "payment_intents" where parts.count == 2:
            object["id"] = nextId("pi"); object["object"] = "payment_intent"
            object["status"] = form["confirm"] == "true" ? "succeeded" : "requires_confirmation"
            if form["confirm"] == "true" { move(rec, amount: amount) }
        case "payment_intents" where parts.count == 3:
            // Update: the amount changes, nothing moves.
            var existing = objects.withLockedValue { $0[parts[2]] } ?? [:]
            if let a = form["amount"].flatMap(Int.init) { existing["amount"] = a }
            object = existing
        case "payment_intents":
            var existing = objects.withLockedValue { $0[parts[2]] } ?? [:]
            if existing["status"] as? String != "succeeded" { move(rec, amount: existing["amount"] as? Int ?? 0) }
            existing["status"] = "succeeded"
            object = existing
        case "refunds", "transfers", "payouts", "topups":
            move(rec, amount: amount)
            object["id"] = nextId(String(parts[1].prefix(2))); object["object"] = String(parts[1].dropLast())
        case "customers": object["id"] = nextId("cus"); object["object"] = "customer"
        default: object["id"] = nextId("obj")
        }
        if let id = object["id"] as? String { objects.withLockedValue { $0[id] = object } }
        return json(200, object, headers: reqId)
    }

    func twilio(_ rec: Received) -> Reply {
        let form = rec.form
        let sid = rec.path.split(separator: "/").dropFirst(2).first.map(String.init) ?? ""
        let price = twilioPrice.withLockedValue { $0 }
        if rec.method == "POST", rec.path.hasSuffix("/Messages.json") {
            move(rec, amount: price.flatMap { Double($0) }.map { Int(abs($0) * 1_000_000) } ?? 0)
        }
        return json(201, ["sid": nextId("SM"), "account_sid": sid, "to": form["To"] ?? "", "from": form["From"] ?? "",
                          "body": form["Body"] ?? "", "status": "queued", "price": price.map { $0 as Any & Sendable } ?? NSNull(), "price_unit": "USD"],
                    headers: ["Twilio-Request-Id": "RQ\(counter.withLockedValue { $0 })"])
    }

    func resend(_ rec: Received) -> Reply {
        if rec.path == "/emails/batch" {
            let count = ((try? JSONSerialization.jsonObject(with: Data(rec.body.utf8))) as? [Any])?.count ?? 0
            move(rec, amount: count)
            return json(200, ["data": (0..<count).map { _ in ["id": nextId("em")] }])
        }
        if rec.method == "POST", rec.path == "/emails" { move(rec, amount: 1) }
        return json(200, ["id": nextId("em")])
    }
}
