import Foundation
import HTTPTypes

/// Where a vault key's token travels: one rule for proxied calls and `POST /v1/child-keys` (README "Proxy").
public enum VaultToken {
    /// The header an agent may name the token in instead of `Authorization`.
    public static let header = HTTPField.Name("X-Keybrake-Key")!

    /// The token from `X-Keybrake-Key`, else `Authorization: Bearer`, else HTTP Basic (the password: Twilio's SDK
    /// sends the token so). Nil when none of them carries one.
    @inlinable
    public static func from(_ headers: HTTPFields) -> String? {
        if let explicit = headers[header], !explicit.isEmpty { return trimmed(explicit) }
        guard let auth = headers[.authorization] else { return nil }
        let parts = auth.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        switch parts[0].lowercased() {
        case "bearer": return trimmed(parts[1])
        case "basic":
            guard let data = Data(base64Encoded: trimmed(parts[1])),
                  let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":") else { return nil }
            return String(text[text.index(after: colon)...])
        default: return nil
        }
    }

    /// Without spaces and tabs at either end (Foundation's CharacterSet trimming is slow enough to show in profiles).
    @inlinable
    public static func trimmed(_ s: some StringProtocol) -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = s.firstIndex(where: { !blank($0) }), let last = s.lastIndex(where: { !blank($0) }) else { return "" }
        return String(s[first...last])
    }
}
