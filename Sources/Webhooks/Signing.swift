import Crypto
import Foundation

/// Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-signature` holds `v1,<base64 HMAC-SHA256
/// of "<webhook-id>.<webhook-timestamp>.<body>">` under the secret's bytes (base64 after `whsec_`), one per secret
/// that currently signs, separated by spaces.
public enum WebhookSigner {
    public static let secretPrefix = "whsec_"

    /// A new secret: `whsec_` + 32 random bytes in base64.
    public static func newSecret() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: .min ... .max, using: &rng) }
        return secretPrefix + Data(bytes).base64EncodedString()
    }

    /// The key bytes of a `whsec_…` secret (nil when it is not one).
    public static func keyBytes(_ secret: String) -> Data? {
        let body = secret.hasPrefix(secretPrefix) ? String(secret.dropFirst(secretPrefix.count)) : secret
        return Data(base64Encoded: body)
    }

    /// One `v1,<base64>` signature.
    public static func signature(secret: String, id: String, timestamp: Int64, body: some DataProtocol) -> String? {
        guard let key = keyBytes(secret) else { return nil }
        var hmac = HMAC<SHA256>(key: SymmetricKey(data: key))
        hmac.update(data: Array("\(id).\(timestamp).".utf8))
        hmac.update(data: body)
        return "v1," + Data(hmac.finalize()).base64EncodedString()
    }

    /// The three Standard Webhooks headers for `body`, signed with every secret given (current first).
    public static func headers(secrets: [String], id: String, timestamp: Int64, body: some DataProtocol) -> [(String, String)] {
        let signatures = secrets.compactMap { signature(secret: $0, id: id, timestamp: timestamp, body: body) }
        return [("webhook-id", id), ("webhook-timestamp", String(timestamp)), ("webhook-signature", signatures.joined(separator: " "))]
    }
}
