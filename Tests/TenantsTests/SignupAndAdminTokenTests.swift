import Foundation
import HTTPLayer
import Hummingbird
import HummingbirdTesting
import KeybrakeCore
import NIOCore
import Tenants
import TokenAuth
import XCTest

/// Signup and admin tokens through the routes (`app.test(.router)`), on the memory repository: what a signup must
/// carry, that a token answers only while its row is active, and that "last used" is written once a minute.
final class SignupAndAdminTokenTests: XCTestCase {
    struct Answer {
        let status: HTTPResponse.Status
        let json: [String: Any]
        var field: String? { (json["error"] as? [String: Any])?["field"] as? String }
    }

    func withApp(_ body: @escaping @Sendable (MemoryTenantRepository, any TestClientProtocol) async throws -> Void) async throws {
        let repository = MemoryTenantRepository()
        let verifier = TokenVerifier(argon2: Argon2id(iterations: 1, memoryKiB: 64, parallelism: 1))
        let controller = TenantController(repository: repository, verifier: verifier, configuration: TenantsConfiguration(), clock: SystemClock())
        let authenticator = AdminTokenAuthenticator(repository: repository, verifier: verifier)
        let router = Router(context: KeybrakeRequestContext.self)
        router.add(middleware: RequestEnvelopeMiddleware())
        controller.addPublicRoutes(to: router)
        controller.addAdminRoutes(to: router.group("/v1").add(middleware: AdminAuthMiddleware(authenticator: authenticator)))
        try await Application(router: router).test(.router) { client in try await body(repository, client) }
    }

    static func call(_ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, token: String? = nil,
              json: [String: Any]? = nil) async throws -> Answer {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        var body: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json))
        }
        let response = try await client.execute(uri: uri, method: method, headers: headers, body: body)
        let object = (try? JSONSerialization.jsonObject(with: Data(buffer: response.body))) as? [String: Any] ?? [:]
        return Answer(status: response.status, json: object)
    }

    func testASignupNamesTheFieldItRefuses() async throws {
        try await withApp { _, client in
            for (body, field) in [(["name": " ", "email": "ops@acme.test"], "name"),
                                  (["name": "Acme\u{202E}", "email": "ops@acme.test"], "name"),
                                  (["name": "Acme", "email": "ops@acme"], "email"),
                                  (["name": "Acme"], "email"),
                                  (["name": "Acme", "email": "ops@acme.test", "plan": "pro"], "plan")] {
                let answer = try await Self.call(client, .post, "/v1/tenants", json: body)
                XCTAssertEqual(answer.status, .badRequest, "\(body)")
                XCTAssertEqual(answer.field, field, "\(body)")
            }
            let created = try await Self.call(client, .post, "/v1/tenants", json: ["name": " Acme ", "email": "ops@acme.test"])
            XCTAssertEqual(created.status, .created)
            XCTAssertEqual((created.json["tenant"] as? [String: Any])?["name"] as? String, "Acme", "trimmed")
            XCTAssertTrue((created.json["admin_token"] as? String ?? "").hasPrefix("kb_admin_"))
        }
    }

    func testATokenAnswersOnlyWhileItsRowIsActiveAndLastUsedIsWrittenOnceAMinute() async throws {
        try await withApp { repository, client in
            let created = try await Self.call(client, .post, "/v1/tenants", json: ["name": "Acme", "email": "ops@acme.test"])
            let token = try XCTUnwrap(created.json["admin_token"] as? String)
            let tokenId = try XCTUnwrap(created.json["admin_token_id"] as? String)
            for _ in 0..<3 {
                let shown = try await Self.call(client, .get, "/v1/tenant", token: token)
                XCTAssertEqual(shown.status, .ok)
            }
            XCTAssertEqual(repository.touches[tokenId], 1, "three requests, one write of last_used_at")

            let second = try await Self.call(client, .post, "/v1/admin-tokens", token: token, json: ["label": "ci"])
            XCTAssertEqual(second.status, .created)
            let secondToken = try XCTUnwrap(second.json["token"] as? String)
            let bySecond = try await Self.call(client, .get, "/v1/tenant", token: secondToken)
            XCTAssertEqual(bySecond.status, .ok)
            let others = try await Self.call(client, .post, "/v1/admin-tokens/revoke-others", token: token)
            XCTAssertEqual((others.json["revoked"] as? [String])?.count, 1)
            // The verified-token cache must not outlive the row: the revoked token is refused on its next request.
            let refused = try await Self.call(client, .get, "/v1/tenant", token: secondToken)
            XCTAssertEqual(refused.status, .unauthorized)
            let own = try await Self.call(client, .get, "/v1/tenant", token: token)
            XCTAssertEqual(own.status, .ok, "the caller's own token stays")
            let wrong = try await Self.call(client, .get, "/v1/tenant", token: token + "x")
            XCTAssertEqual(wrong.status, .unauthorized, "a wrong secret")
            let none = try await Self.call(client, .get, "/v1/tenant")
            XCTAssertEqual(none.status, .unauthorized, "no token")
        }
    }
}
