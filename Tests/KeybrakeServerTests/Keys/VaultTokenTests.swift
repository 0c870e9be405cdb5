import Foundation
import HTTPTypes
import HummingbirdTesting
import Keys
import NIOCore
import XCTest

/// A vault key's token is read by one rule on proxied calls and on `POST /v1/child-keys` (`VaultToken.from`).
final class VaultTokenTests: XCTestCase {
    static let token = "kb_vault_abc123_secretpart"

    static func headers(_ fields: [(String, String)]) -> HTTPFields {
        var headers = HTTPFields()
        for (name, value) in fields { headers.append(HTTPField(name: HTTPField.Name(name)!, value: value)) }
        return headers
    }

    static func basic(_ user: String, _ password: String) -> String {
        "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
    }

    func testTheTokenIsReadFromTheHeaderBearerOrTheBasicPassword() {
        let t = Self.token
        for (fields, expected) in [
            ([("X-Keybrake-Key", t)], t),
            ([("X-Keybrake-Key", " \t\(t) ")], t),
            ([("Authorization", "Bearer \(t)")], t),
            ([("Authorization", "bearer  \(t)\t")], t),
            ([("Authorization", Self.basic("ACxxxxxxxx", t))], t),
            // Twilio's SDK: the account SID as the user, the token as the password; a colon in it is kept.
            ([("Authorization", Self.basic("", "a:b"))], "a:b"),
            // X-Keybrake-Key first; an empty one leaves Authorization to decide.
            ([("X-Keybrake-Key", t), ("Authorization", "Bearer other")], t),
            ([("X-Keybrake-Key", ""), ("Authorization", "Bearer \(t)")], t),
        ] as [([(String, String)], String)] {
            XCTAssertEqual(VaultToken.from(Self.headers(fields)), expected, "\(fields)")
        }
    }

    func testNoTokenIsReadFromAnythingElse() {
        for fields in [
            [],
            [("Authorization", "Bearer")],
            [("Authorization", "Token \(Self.token)")],
            [("Authorization", "Basic not-base64!")],
            [("Authorization", "Basic " + Data("no colon".utf8).base64EncodedString())],
        ] as [[(String, String)]] {
            XCTAssertNil(VaultToken.from(Self.headers(fields)), "\(fields)")
        }
    }

    /// Minting a child takes the parent's token as proxied calls do: also as the HTTP Basic password.
    func testChildKeysTakeTheParentsTokenAsTheBasicPasswordToo() async throws {
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        try await h.run { client in
            let t = try await client.tenantWithCredentials()
            let (_, parent) = try await client.vaultKey(t, ["daily_usd_cap": 100])
            let body = ByteBuffer(string: #"{"label":"run 1"}"#)
            let minted = try await client.execute(uri: "/v1/child-keys", method: .post, headers: [
                .authorization: Self.basic("ACxxxxxxxx", parent), .contentType: "application/json",
            ], body: body)
            XCTAssertEqual(minted.status, .created, String(buffer: minted.body))
            let wrong = try await client.execute(uri: "/v1/child-keys", method: .post, headers: [
                .authorization: Self.basic("ACxxxxxxxx", parent + "x"), .contentType: "application/json",
            ], body: body)
            XCTAssertEqual(wrong.status, .unauthorized)
        }
    }
}
