/// Hex digits and RFC 3986 percent-encoding over UTF-8 bytes, without Foundation: one place for what the path
/// normalizer, form bodies, canonical JSON and the idempotency hashes share. `@inlinable`: some callers are on the
/// proxy's per-request path, in other modules.
public enum Hex {
    /// The value of one hex digit, either case; nil for any other byte.
    @inlinable public static func value(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }

    /// The digit of a nibble (0...15): `0`-`9`, then `a`-`f` (or `A`-`F` when `uppercase`).
    @inlinable public static func digit(_ nibble: UInt8, uppercase: Bool = false) -> UInt8 {
        nibble < 10 ? 0x30 + nibble : (uppercase ? 0x41 : 0x61) + nibble - 10
    }

    /// Appends the two digits of `byte`, high nibble first.
    @inlinable public static func append(_ byte: UInt8, uppercase: Bool = false, to out: inout [UInt8]) {
        out.append(digit(byte >> 4, uppercase: uppercase))
        out.append(digit(byte & 0x0F, uppercase: uppercase))
    }

    /// Lower-case hex of `bytes` (a SHA-256 digest: 64 characters).
    @inlinable public static func lowercase(_ bytes: some Sequence<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in bytes { append(byte, to: &out) }
        return String(decoding: out, as: UTF8.self)
    }
}

public enum PercentEncoding {
    /// RFC 3986 unreserved characters: ALPHA, DIGIT, `-`, `.`, `_`, `~`. Everything else in a component is escaped.
    @inlinable public static func isUnreserved(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
            || byte == 0x2D || byte == 0x2E || byte == 0x5F || byte == 0x7E
    }

    /// Appends `%XX` for `byte`, upper-case as RFC 3986 recommends.
    @inlinable public static func appendEscaped(_ byte: UInt8, to out: inout [UInt8]) {
        out.append(0x25)
        Hex.append(byte, uppercase: true, to: &out)
    }

    /// Appends `bytes` with everything but unreserved characters escaped, so `&`, `=`, `+` or `/` inside a key or
    /// value can never be confused with a separator.
    @inlinable public static func encode(_ bytes: some Sequence<UInt8>, into out: inout [UInt8]) {
        for byte in bytes {
            if isUnreserved(byte) { out.append(byte) } else { appendEscaped(byte, to: &out) }
        }
    }

}
