import KeybrakeCore

/// `kb_admin_<id>_<secret>` / `kb_vault_<id>_<secret>`: the id finds the row, the secret proves possession.
/// The fixed prefixes let secret scanners spot a leaked token.
public enum TokenKind: String, Sendable {
    case admin
    case vault

    public var prefix: String { "kb_\(rawValue)_" }
}

public struct ParsedToken: Sendable {
    public let kind: TokenKind
    /// Public id, the row key (base62, no underscores).
    public let publicId: String
    /// The whole token as presented; never log this.
    public let raw: String
}

public enum TokenFormat {
    public static let publicIdLength = 16
    /// 43 base62 characters ≈ 256 bits of entropy (DESIGN §4 asks for ≥ 32 random bytes).
    public static let secretLength = 43

    /// A fresh token and its public id.
    public static func generate(_ kind: TokenKind) -> (token: String, publicId: String) {
        let id = Identifier.randomBase62(count: publicIdLength)
        let secret = Identifier.randomBase62(count: secretLength)
        return (kind.prefix + id + "_" + secret, id)
    }

    /// Parses a token of the given kind; nil if it is not well-formed (wrong prefix, lengths or alphabet).
    public static func parse(_ text: String, as kind: TokenKind) -> ParsedToken? {
        guard text.hasPrefix(kind.prefix) else { return nil }
        let body = text.dropFirst(kind.prefix.count)
        let parts = body.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 2,
              parts[0].count == publicIdLength, Identifier.isBase62(parts[0]),
              parts[1].count == secretLength, Identifier.isBase62(parts[1])
        else { return nil }
        return ParsedToken(kind: kind, publicId: String(parts[0]), raw: text)
    }
}
