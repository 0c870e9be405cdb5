import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import KeybrakeCore
import KeybrakeServer
import Logging
import PostgresNIO
import XCTest

/// A tenant with stored vendor credentials and a vault key, plus the fake vendors behind the proxy.
struct ProxyHarness: Sendable {
    static let stripeSecret = "sk_test_RealStripeSecretNeverShown4242"
    static let twilioSid = "AC" + String(repeating: "ab", count: 16)
    static let twilioToken = "twilio-auth-token-very-secret-0001"
    static let resendKey = "re_RealResendKeyNeverShown77"

    let fake: FakeVendors
    let logs: LogCapture

    static func start() async throws -> ProxyHarness {
        let fake = FakeVendors()
        try await fake.start()
        return ProxyHarness(fake: fake, logs: LogCapture())
    }

    func configure(_ config: inout AppConfiguration) {
        config.proxy.upstreams = [.stripe: fake.url, .twilio: fake.url, .resend: fake.url]
        config.proxy.upstreamTimeout = .milliseconds(500)
        config.proxy.inFlightWait = .seconds(5)
        // The invariant test labels each request with the vault key that sent it (FakeVendors.Movement.vault).
        config.proxy.extraForwardedHeaders = ["x-test-vault"]
    }

    /// Runs `body` against one app instance wired to the fakes.
    func run<T>(_ tweak: @escaping @Sendable (inout AppConfiguration) -> Void = { _ in }, over setup: TestingSetup = .router,
                _ body: @escaping @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
        try await TestApp.run(logs: logs, { config in configure(&config); tweak(&config) }, over: setup, body)
    }
}

struct Tenant: Sendable {
    let id: String
    let admin: String
}

extension TestClientProtocol {
    /// Signs up and stores credentials for all three vendors.
    func tenantWithCredentials() async throws -> Tenant {
        let (id, admin) = try await signup()
        expectStatus(try await call(.put, "/v1/vendors/stripe/credentials", token: admin, json: ["secret_key": ProxyHarness.stripeSecret]), .ok)
        expectStatus(try await call(.put, "/v1/vendors/twilio/credentials", token: admin,
                                    json: ["account_sid": ProxyHarness.twilioSid, "auth_token": ProxyHarness.twilioToken]), .ok)
        expectStatus(try await call(.put, "/v1/vendors/resend/credentials", token: admin, json: ["api_key": ProxyHarness.resendKey]), .ok)
        return Tenant(id: id, admin: admin)
    }

    func vaultKey(_ tenant: Tenant, _ policy: [String: Any]) async throws -> (id: String, token: String) {
        var body: [String: Any] = ["vendor": "stripe", "label": "agent", "allowed_endpoints": ["POST /v1/charges"]]
        body.merge(policy) { $1 }
        let r = try await call(.post, "/v1/keys", token: tenant.admin, json: body)
        XCTAssertEqual(r.status, .created, r.text)
        return ((r.json["key"] as? [String: Any])?["id"] as? String ?? "", r.json["token"] as? String ?? "")
    }

    /// A proxied request as an SDK sends it: form body, bearer vault key.
    @discardableResult
    func proxy(_ method: HTTPRequest.Method, _ path: String, key: String, form: [(String, String)] = [], json: Any? = nil,
               headers extra: [String: String] = [:], basicAuth: Bool = false) async throws -> HTTPResult {
        var headers: HTTPFields = [:]
        if basicAuth {
            headers[.authorization] = "Basic " + Data("ACsdkuser:\(key)".utf8).base64EncodedString()
        } else {
            headers[.authorization] = "Bearer \(key)"
        }
        var body: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json))
        } else if !form.isEmpty {
            headers[.contentType] = "application/x-www-form-urlencoded"
            body = ByteBuffer(string: form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&"))
        }
        for (k, v) in extra { headers[HTTPField.Name(k)!] = v }
        let response = try await execute(uri: path, method: method, headers: headers, body: body)
        return HTTPResult(status: response.status, headers: response.headers, body: Data(buffer: response.body))
    }
}

/// Direct reads of the data-plane tables for assertions.
enum Ledger {
    struct Row: Equatable { var settled: Int64; var reserved: Int64; var unknown: Int64 }

    static func day(_ keyId: String) async throws -> Row {
        try await TestDatabase.withClient { db in
            var row = Row(settled: 0, reserved: 0, unknown: 0)
            for try await r in try await db.query("""
                SELECT settled_micros, reserved_micros, unknown_micros, counted_micros FROM spend_ledger WHERE key_id = \(keyId) AND period = 'day'
                ORDER BY period_start DESC LIMIT 1
                """).decode((Int64, Int64, Int64, Int64).self) {
                row = Row(settled: r.0, reserved: r.1, unknown: r.2)
                // The counter the caps are checked against must always equal the reservations' breakdown.
                XCTAssertEqual(r.3, r.0 + r.1 + r.2, "counted_micros of \(keyId) drifted from its reservations")
            }
            return row
        }
    }

    struct AuditRow: Sendable { var decision: String; var errorCode: String?; var state: String?; var outcome: String?; var amount: Int64; var upstreamStatus: Int?; var duplicateOf: String?; var idempotencyKey: String? }

    /// The key's rows. A call that moves no money has its answer written into its row just after the agent got it
    /// (not awaited): rows still marked in flight get a moment to be completed.
    static func audit(_ keyId: String) async throws -> [AuditRow] {
        for _ in 0..<40 {
            let rows = try await auditNow(keyId)
            if !rows.contains(where: { $0.state == "in_flight" }) { return rows }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await auditNow(keyId)
    }

    static func auditNow(_ keyId: String) async throws -> [AuditRow] {
        try await TestDatabase.withClient { db in
            var rows: [AuditRow] = []
            for try await r in try await db.query("""
                SELECT decision, error_code, state, outcome, amount_micros, upstream_status, duplicate_of, idempotency_key
                FROM audit_events WHERE key_id = \(keyId) ORDER BY created_at, id
                """).decode((String, String?, String?, String?, Int64, Int?, String?, String?).self) {
                rows.append(AuditRow(decision: r.0, errorCode: r.1, state: r.2, outcome: r.3, amount: r.4, upstreamStatus: r.5,
                                     duplicateOf: r.6, idempotencyKey: r.7))
            }
            return rows
        }
    }

    static func auditText(tenant: String) async throws -> String {
        try await TestDatabase.withClient { db in
            var text = ""
            for try await r in try await db.query("SELECT row_to_json(a)::text FROM audit_events a WHERE tenant_id = \(tenant)").decode(String.self) {
                text += r + "\n"
            }
            return text
        }
    }
}
