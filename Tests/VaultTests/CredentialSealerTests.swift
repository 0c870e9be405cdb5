import Foundation
import HTTPLayer
import KeybrakeCore
import XCTest

@testable import Vault

/// The envelope a vendor credential is stored in (AES-256-GCM under the active master key, bound to its tenant and
/// vendor): what opens it, and that nothing else does.
final class CredentialSealerTests: XCTestCase {
    let k1 = MasterKeyRing.generateConfigLine(id: "k1")
    let k2 = MasterKeyRing.generateConfigLine(id: "k2")
    let secret = Data(#"{"secretKey":"sk_test_0123456789abcdef"}"#.utf8)

    func sealer(_ config: String) throws -> CredentialSealer { CredentialSealer(ring: try MasterKeyRing(parsing: config)) }

    func testASealedCredentialOpensForItsTenantAndVendorOnly() throws {
        let s = try sealer(k1)
        let (keyId, sealed) = try s.seal(secret, tenantId: "ten_a", vendor: "stripe")
        XCTAssertEqual(keyId, "k1")
        XCTAssertEqual(try s.open(sealed, masterKeyId: keyId, tenantId: "ten_a", vendor: "stripe"), secret)
        XCTAssertNil(sealed.range(of: Data("sk_test".utf8)), "the secret is not in the stored bytes")
        // A row copied to another tenant, or relabelled as another vendor, fails instead of decrypting.
        for (tenant, vendor) in [("ten_b", "stripe"), ("ten_a", "twilio"), ("ten_a|stripe", ""), ("", "ten_a|stripe")] {
            XCTAssertThrowsError(try s.open(sealed, masterKeyId: keyId, tenantId: tenant, vendor: vendor), "\(tenant) \(vendor)") {
                guard case .authenticationFailed = $0 as? CredentialSealer.SealError else { return XCTFail("\($0)") }
            }
        }
    }

    func testAnyChangedByteIsRefused() throws {
        let s = try sealer(k1)
        let (keyId, sealed) = try s.seal(secret, tenantId: "ten_a", vendor: "stripe")
        // Nonce, ciphertext and tag alike: GCM authenticates all of it.
        for index in sealed.indices {
            var tampered = sealed
            tampered[index] ^= 0x01
            XCTAssertThrowsError(try s.open(tampered, masterKeyId: keyId, tenantId: "ten_a", vendor: "stripe"), "byte \(index)")
        }
        XCTAssertThrowsError(try s.open(sealed.dropLast(), masterKeyId: keyId, tenantId: "ten_a", vendor: "stripe"), "truncated")
        XCTAssertThrowsError(try s.open(Data(), masterKeyId: keyId, tenantId: "ten_a", vendor: "stripe"), "empty")
    }

    func testEverySealUsesAFreshNonce() throws {
        let s = try sealer(k1)
        let a = try s.seal(secret, tenantId: "ten_a", vendor: "stripe").sealed
        let b = try s.seal(secret, tenantId: "ten_a", vendor: "stripe").sealed
        XCTAssertNotEqual(a.prefix(12), b.prefix(12), "the 96-bit nonce")
        XCTAssertNotEqual(a, b)
    }

    func testARotatedRingSealsWithTheNewKeyAndStillOpensTheOld() throws {
        let old = try sealer(k1)
        let (oldId, oldRow) = try old.seal(secret, tenantId: "ten_a", vendor: "resend")
        let rotated = try sealer(k2 + "," + k1)
        XCTAssertEqual(try rotated.open(oldRow, masterKeyId: oldId, tenantId: "ten_a", vendor: "resend"), secret)
        let (newId, newRow) = try rotated.seal(secret, tenantId: "ten_a", vendor: "resend")
        XCTAssertEqual(newId, "k2", "the first key is the active one")
        XCTAssertThrowsError(try old.open(newRow, masterKeyId: newId, tenantId: "ten_a", vendor: "resend")) {
            guard case .unknownMasterKey("k2") = $0 as? CredentialSealer.SealError else { return XCTFail("\($0)") }
        }
        // The same id with other key material (a reconfigured ring) fails authentication, it does not decrypt garbage.
        let impostor = try sealer(MasterKeyRing.generateConfigLine(id: "k1"))
        XCTAssertThrowsError(try impostor.open(oldRow, masterKeyId: "k1", tenantId: "ten_a", vendor: "resend"))
    }
}
