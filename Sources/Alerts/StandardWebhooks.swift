import Crypto
import Foundation

/// Signing per the Standard Webhooks spec (https://www.standardwebhooks.com): headers `webhook-id`,
/// `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed
/// with the base64-decoded part of the `whsec_…` secret. Several signatures are separated by spaces (a rotation signs
/// with the new and the previous secret); a receiver accepts the message if any one verifies.
public enum StandardWebhooks {
    public static let secretPrefix = "whsec_"

    /// A new secret: `whsec_` + base64 of 32 random bytes.
    public static func generateSecret() -> String {
        var rng = SystemRandomNumberGenerator()
        var bytes = [UInt8]()
        bytes.reserveCapacity(32)
        for _ in 0..<4 {
            var word = rng.next()
            for _ in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: word)); word >>= 8 }
        }
        return secretPrefix + Data(bytes).base64EncodedString()
    }

    /// The key bytes of a `whsec_…` secret; nil if it is not one.
    public static func key(of secret: String) -> [UInt8]? {
        guard secret.hasPrefix(secretPrefix), let data = Data(base64Encoded: String(secret.dropFirst(secretPrefix.count))),
              !data.isEmpty else { return nil }
        return Array(data)
    }

    /// `v1,<base64 signature>` of one message under one key.
    public static func signature(key: [UInt8], id: String, timestamp: Int64, body: [UInt8]) -> String {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: key))
        mac.update(data: Array("\(id).\(timestamp).".utf8))
        mac.update(data: body)
        return "v1," + Data(mac.finalize()).base64EncodedString()
    }

    /// The three headers of a delivery, signed with every key given (the current secret first).
    public static func headers(id: String, timestamp: Int64, body: [UInt8], keys: [[UInt8]]) -> [(String, String)] {
        [("webhook-id", id), ("webhook-timestamp", String(timestamp)),
         ("webhook-signature", keys.map { signature(key: $0, id: id, timestamp: timestamp, body: body) }.joined(separator: " "))]
    }
}
