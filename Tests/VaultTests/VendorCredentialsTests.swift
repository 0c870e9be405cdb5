import Foundation
import HTTPLayer
import KeybrakeCore
import XCTest

@testable import Vault

/// The shape of each vendor's secret as PUT /v1/vendors/{vendor}/credentials takes it, and how it is shown back.
final class VendorCredentialsTests: XCTestCase {
    func parse(_ vendor: Vendor, _ fields: [String: String]) throws(KeybrakeError) -> VendorCredentials {
        try VendorCredentials.parse(vendor, JSONObjectReader(fields.mapValues { .string($0) }))
    }

    func refusedField(_ vendor: Vendor, _ fields: [String: String]) -> String? {
        do {
            _ = try parse(vendor, fields)
            return nil
        } catch {
            return error.field
        }
    }

    func testEachVendorsSecretIsCheckedAndTheFieldNamed() throws {
        let sid = "AC" + String(repeating: "a1", count: 16)
        XCTAssertEqual(try parse(.stripe, ["secret_key": "sk_test_1234567890"]), .stripe(secretKey: "sk_test_1234567890"))
        XCTAssertEqual(try parse(.stripe, ["secret_key": "rk_live_1234567890"]), .stripe(secretKey: "rk_live_1234567890"))
        XCTAssertEqual(try parse(.twilio, ["account_sid": sid, "auth_token": "0123456789abcdef"]),
                       .twilio(accountSid: sid, authToken: "0123456789abcdef"))
        XCTAssertEqual(try parse(.resend, ["api_key": "re_12345678"]), .resend(apiKey: "re_12345678"))

        XCTAssertEqual(refusedField(.stripe, ["secret_key": "pk_test_1234567890"]), "secret_key", "a publishable key")
        XCTAssertEqual(refusedField(.stripe, ["secret_key": "sk_test_12 34567890"]), "secret_key", "a space")
        XCTAssertEqual(refusedField(.stripe, ["secret_key": "sk_1"]), "secret_key", "too short")
        XCTAssertEqual(refusedField(.stripe, ["api_key": "sk_test_1234567890"]), "api_key", "another vendor's field")
        XCTAssertEqual(refusedField(.twilio, ["account_sid": "AC123", "auth_token": "0123456789abcdef"]), "account_sid")
        XCTAssertEqual(refusedField(.twilio, ["account_sid": "AC" + String(repeating: "g", count: 32), "auth_token": "0123456789abcdef"]),
                       "account_sid", "not hex")
        XCTAssertEqual(refusedField(.twilio, ["account_sid": sid, "auth_token": "short"]), "auth_token")
        XCTAssertEqual(refusedField(.twilio, ["account_sid": sid]), "auth_token", "required")
        XCTAssertEqual(refusedField(.resend, ["api_key": "sk_12345678"]), "api_key")
    }

    func testOnlyTheFingerprintIsEverShown() {
        let credentials: [VendorCredentials] = [
            .stripe(secretKey: "sk_test_secretpart_WXYZ"),
            .twilio(accountSid: "AC" + String(repeating: "0", count: 32), authToken: "tokensecretpart_WXYZ"),
            .resend(apiKey: "re_secretpart_WXYZ"),
        ]
        for c in credentials {
            XCTAssertEqual(c.fingerprint, "…WXYZ")
            XCTAssertFalse("\(c)".contains("secretpart"), "\(c)")
            XCTAssertFalse(String(reflecting: c).contains("secretpart"))
        }
        XCTAssertEqual(credentials[1].accountSid, "AC" + String(repeating: "0", count: 32))
        XCTAssertNil(credentials[0].accountSid)
    }

    func testWhatIsSealedReadsBackAsTheSameVendorsCredential() throws {
        let twilio = VendorCredentials.twilio(accountSid: "AC" + String(repeating: "1", count: 32), authToken: "0123456789abcdef")
        XCTAssertEqual(try VendorCredentials.deserialize(twilio.serialized(), vendor: .twilio), twilio)
        // A Stripe row opened as Resend's (a mislabelled vendor) is refused, not read as an empty key.
        XCTAssertThrowsError(try VendorCredentials.deserialize(VendorCredentials.stripe(secretKey: "sk_test_1234567890").serialized(),
                                                               vendor: .resend))
    }
}
