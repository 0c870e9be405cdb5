import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import PostgresNIO
import Storage
import Vault
import XCTest

final class CredentialTests: XCTestCase {
    static let secret = "sk_live_51TopSecretValueNeverStoredInClear9876"
    

    func testCredentialsAreEncryptedAtRestAndShownOnlyAsFingerprint() async throws {
        let logs = LogCapture()
        let (tenantId, _) = try await TestApp.run(logs: logs) { client in
            let (tenantId, admin) = try await client.signup()
            let put = try await client.call(.put, "/v1/vendors/stripe/credentials", token: admin, json: ["secret_key": CredentialTests.secret])
            XCTAssertEqual(put.status, .ok, put.text)
            XCTAssertEqual((put.json["credentials"] as? [String: Any])?["fingerprint"] as? String, "…9876")
            XCTAssertFalse(put.text.contains(CredentialTests.secret))
            let shown = try await client.call(.get, "/v1/vendors/stripe/credentials", token: admin)
            XCTAssertEqual(shown.status, .ok)
            XCTAssertFalse(shown.text.contains(CredentialTests.secret))

            let twilio = try await client.call(.put, "/v1/vendors/twilio/credentials", token: admin,
                                               json: ["account_sid": "AC" + String(repeating: "a1", count: 16), "auth_token": "0123456789abcdef0123456789abcdef"])
            XCTAssertEqual(twilio.status, .ok, twilio.text)
            XCTAssertEqual((twilio.json["credentials"] as? [String: Any])?["account_sid"] as? String, "AC" + String(repeating: "a1", count: 16))
            return (tenantId, admin)
        }
        let row = try await TestDatabase.withClient { db in
            var found: (String, ByteBuffer, String)?
            for try await r in try await db.query(
                "SELECT master_key_id, sealed, fingerprint FROM vendor_credentials WHERE tenant_id = \(tenantId) AND vendor = 'stripe'"
            ).decode((String, ByteBuffer, String).self) { found = r }
            return found
        }
        let (keyId, sealed, fingerprint) = try XCTUnwrap(row)
        XCTAssertEqual(keyId, "test1")
        let sealedBytes = Data(buffer: sealed)
        XCTAssertNil(sealedBytes.range(of: Data(CredentialTests.secret.utf8)), "plaintext secret found in the stored row")
        XCTAssertNil(sealedBytes.range(of: Data("TopSecret".utf8)))
        XCTAssertEqual(sealedBytes.count, 12 + Data("{\"secretKey\":\"\(CredentialTests.secret)\"}".utf8).count + 16, "nonce + ciphertext + tag")
        XCTAssertEqual(fingerprint, "…9876")
        XCTAssertFalse(logs.text.contains(CredentialTests.secret), "secret reached the log")
        XCTAssertFalse(logs.text.contains("TopSecret"))
    }

    func testCiphertextCopiedToAnotherTenantFailsToDecrypt() async throws {
        let ring = try MasterKeyRing(parsing: TestApp.masterKeys)
        let (a, b) = try await TestApp.run { client in
            let a = try await client.signup(name: "A")
            let b = try await client.signup(name: "B")
            expectStatus(try await client.call(.put, "/v1/vendors/stripe/credentials", token: a.token, json: ["secret_key": CredentialTests.secret]), .ok)
            expectStatus(try await client.call(.put, "/v1/vendors/stripe/credentials", token: b.token, json: ["secret_key": "sk_test_tenantBsOwnKey1234"]), .ok)
            return (a.tenantId, b.tenantId)
        }
        try await TestDatabase.withClient { db in
            let store = CredentialStore(client: DatabasePool(fixed: db), sealer: CredentialSealer(ring: ring))
            let logger = Logger(label: "test")
            let own = try await store.credentials(vendor: .stripe, tenantId: a, logger: logger)
            XCTAssertEqual(own, .stripe(secretKey: CredentialTests.secret))
            // An attacker with write access copies A's sealed blob into B's row.
            try await db.query("""
                UPDATE vendor_credentials SET sealed = (SELECT sealed FROM vendor_credentials WHERE tenant_id = \(a) AND vendor = 'stripe'),
                  master_key_id = (SELECT master_key_id FROM vendor_credentials WHERE tenant_id = \(a) AND vendor = 'stripe')
                WHERE tenant_id = \(b) AND vendor = 'stripe'
                """, logger: logger)
            do {
                let stolen = try await store.credentials(vendor: .stripe, tenantId: b, logger: logger)
                XCTFail("copied ciphertext decrypted for another tenant: \(String(describing: stolen))")
            } catch let error as CredentialSealer.SealError {
                XCTAssertEqual("\(error)", "\(CredentialSealer.SealError.authenticationFailed)")
            }
        }
    }

    func testRotateMasterKeyReencryptsEveryRow() async throws {
        let old = try MasterKeyRing(parsing: TestApp.masterKeys)
        let newLine = MasterKeyRing.generateConfigLine(id: "rotated-\(UUID().uuidString.prefix(6))")
        let tenants = try await TestApp.run { client in
            var ids: [String] = []
            for i in 0..<3 {
                let t = try await client.signup(name: "R\(i)")
                expectStatus(try await client.call(.put, "/v1/vendors/resend/credentials", token: t.token, json: ["api_key": "re_rotation_\(i)_abcdef"]), .ok)
                ids.append(t.tenantId)
            }
            return ids
        }
        let both = try MasterKeyRing(parsing: newLine + "," + TestApp.masterKeys)
        let onlyNew = try MasterKeyRing(parsing: newLine)
        try await TestDatabase.withClient { db in
            let logger = Logger(label: "test")
            // Before rotation the new key alone cannot read the rows.
            let newOnlyStore = CredentialStore(client: DatabasePool(fixed: db), sealer: CredentialSealer(ring: onlyNew))
            do {
                _ = try await newOnlyStore.credentials(vendor: .resend, tenantId: tenants[0], logger: logger)
                XCTFail("new key decrypted a row sealed by the old key")
            } catch {}
            let result = try await CredentialStore(client: DatabasePool(fixed: db), sealer: CredentialSealer(ring: both)).rotateAll(logger: logger)
            XCTAssertGreaterThanOrEqual(result.rotated, 3)
            // Afterwards every row that could be opened is sealed by the new key; only rows other tests
            // deliberately tampered with (copied ciphertext) are reported and left alone.
            var remaining: [String] = []
            for try await t in try await db.query("SELECT tenant_id FROM vendor_credentials WHERE master_key_id <> \(onlyNew.active.id)").decode(String.self) {
                remaining.append(t)
            }
            XCTAssertEqual(Set(remaining), Set(result.failed.map(\.tenantId)))
            XCTAssertTrue(Set(remaining).isDisjoint(with: tenants))
            for (i, tenant) in tenants.enumerated() {
                let creds = try await newOnlyStore.credentials(vendor: .resend, tenantId: tenant, logger: logger)
                XCTAssertEqual(creds, .resend(apiKey: "re_rotation_\(i)_abcdef"))
            }
            _ = old
        }
    }

    func testCredentialValidationNamesTheField() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            let cases: [(String, [String: Any], String)] = [
                ("stripe", ["secret_key": "pk_live_publishable"], "secret_key"),
                ("stripe", ["secret_key": "sk_live_x", "extra": 1], "extra"),
                ("twilio", ["account_sid": "AC123", "auth_token": "0123456789abcdef"], "account_sid"),
                ("twilio", ["account_sid": "AC" + String(repeating: "0", count: 32)], "auth_token"),
                ("resend", ["api_key": "sk_wrong"], "api_key"),
                ("paypal", ["secret_key": "sk_live_abcdefghijkl"], "vendor"),
            ]
            for (vendor, body, field) in cases {
                let r = try await client.call(.put, "/v1/vendors/\(vendor)/credentials", token: admin, json: body)
                XCTAssertEqual(r.status, .badRequest, "\(vendor) \(body)")
                XCTAssertEqual(r.errorCode, "invalid_request")
                XCTAssertEqual(r.errorField, field, "\(vendor) \(body)")
            }
            expectStatus(try await client.call(.delete, "/v1/vendors/stripe/credentials", token: admin), .notFound)
        }
    }

    func testTenantsCannotSeeOrDeleteEachOthersCredentials() async throws {
        try await TestApp.run { client in
            let a = try await client.signup(name: "A")
            let b = try await client.signup(name: "B")
            expectStatus(try await client.call(.put, "/v1/vendors/stripe/credentials", token: a.token, json: ["secret_key": CredentialTests.secret]), .ok)
            let seenByB = try await client.call(.get, "/v1/vendors/stripe/credentials", token: b.token)
            XCTAssertEqual(seenByB.status, .notFound)
            XCTAssertFalse(seenByB.text.contains("9876"))
            expectStatus(try await client.call(.delete, "/v1/vendors/stripe/credentials", token: b.token), .notFound)
            expectStatus(try await client.call(.get, "/v1/vendors/stripe/credentials", token: a.token), .ok)
            expectStatus(try await client.call(.delete, "/v1/vendors/stripe/credentials", token: a.token), .noContent)
            expectStatus(try await client.call(.get, "/v1/vendors/stripe/credentials", token: a.token), .notFound)
        }
    }
}
