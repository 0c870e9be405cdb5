import Crypto
import Foundation

/// The master keys that seal vendor credentials. The first key is active (used for new writes);
/// the others only decrypt, so rows sealed before a rotation keep working until re-encrypted.
public struct MasterKeyRing: Sendable {
    public struct Entry: Sendable {
        public let id: String
        // Raw bytes: SymmetricKey is not Sendable in this swift-crypto; one is built per use (cheap).
        let bytes: [UInt8]
        var key: SymmetricKey { SymmetricKey(data: bytes) }
    }

    public let entries: [Entry]
    public var active: Entry { entries[0] }

    public enum ConfigError: Error, CustomStringConvertible {
        case empty
        case malformed(String)
        public var description: String {
            switch self {
            case .empty:
                "no master key configured: set KEYBRAKE_MASTER_KEYS=id:<base64 of 32 random bytes> (or KEYBRAKE_MASTER_KEYS_FILE); `head -c 32 /dev/urandom | base64` makes one"
            case .malformed(let why): "KEYBRAKE_MASTER_KEYS is invalid: \(why)"
            }
        }
    }

    /// Parses `id:base64,id2:base64` (first is active). Key material never appears in errors.
    public init(parsing text: String) throws {
        var entries: [Entry] = []
        for item in text.split(whereSeparator: { $0 == "," || $0 == "\n" }) {
            let trimmed = item.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let colon = trimmed.firstIndex(of: ":") else { throw ConfigError.malformed("entry without ':' (expected id:base64)") }
            let id = String(trimmed[..<colon])
            guard !id.isEmpty, id.count <= 64, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }), id.allSatisfy(\.isASCII) else {
                throw ConfigError.malformed("key id '\(id.prefix(64))' must be 1–64 of A–Z a–z 0–9 - _")
            }
            guard let bytes = Data(base64Encoded: String(trimmed[trimmed.index(after: colon)...])), bytes.count == 32 else {
                throw ConfigError.malformed("key '\(id)' is not base64 of exactly 32 bytes")
            }
            guard !entries.contains(where: { $0.id == id }) else { throw ConfigError.malformed("key id '\(id)' appears twice") }
            entries.append(Entry(id: id, bytes: Array(bytes)))
        }
        guard !entries.isEmpty else { throw ConfigError.empty }
        self.entries = entries
    }

    public func entry(id: String) -> Entry? { entries.first { $0.id == id } }

    /// A fresh `id:base64` line for configuration.
    public static func generateConfigLine(id: String) -> String {
        let key = SymmetricKey(size: .bits256)
        let b64 = key.withUnsafeBytes { Data($0).base64EncodedString() }
        return "\(id):\(b64)"
    }
}

/// AES-256-GCM envelope for one credential. The AAD binds the ciphertext to its tenant and vendor,
/// so a row copied to another tenant (or vendor) fails authentication instead of decrypting.
public struct CredentialSealer: Sendable {
    public let ring: MasterKeyRing

    public init(ring: MasterKeyRing) { self.ring = ring }

    public enum SealError: Error, CustomStringConvertible {
        case unknownMasterKey(String)
        case authenticationFailed
        public var description: String {
            switch self {
            case .unknownMasterKey(let id): "credential sealed with master key '\(id)', which is not configured"
            case .authenticationFailed: "credential failed to decrypt (wrong key, or the row does not belong to this tenant/vendor)"
            }
        }
    }

    static func aad(tenantId: String, vendor: String) -> Data { Data("keybrake.credential.v1|\(tenantId)|\(vendor)".utf8) }

    /// Seals with the active key and a random 96-bit nonce. Returns the key id and nonce‖ciphertext‖tag.
    public func seal(_ plaintext: Data, tenantId: String, vendor: String) throws -> (masterKeyId: String, sealed: Data) {
        let box = try AES.GCM.seal(plaintext, using: ring.active.key, nonce: AES.GCM.Nonce(),
                                   authenticating: Self.aad(tenantId: tenantId, vendor: vendor))
        guard let combined = box.combined else { throw SealError.authenticationFailed }
        return (ring.active.id, combined)
    }

    public func open(_ sealed: Data, masterKeyId: String, tenantId: String, vendor: String) throws -> Data {
        guard let entry = ring.entry(id: masterKeyId) else { throw SealError.unknownMasterKey(masterKeyId) }
        do {
            let box = try AES.GCM.SealedBox(combined: sealed)
            return try AES.GCM.open(box, using: entry.key, authenticating: Self.aad(tenantId: tenantId, vendor: vendor))
        } catch {
            throw SealError.authenticationFailed
        }
    }
}
