/// Canonical form of a request path, computed before any allowlist check so that
/// encodings and dot segments cannot smuggle a request past a pattern.
public enum PathNormalizer {
    public enum Rejection: Error, Equatable, Sendable {
        case empty
        case notAbsolute
        case emptySegment          // "//" or a trailing "/"
        case dotSegment            // "." or ".." (also when percent-encoded)
        case encodedSlash          // %2F or %5C
        case badEncoding           // "%" not followed by two hex digits
        case forbiddenCharacter    // control characters, backslash

        public var reason: String {
            switch self {
            case .empty: "the path is empty"
            case .notAbsolute: "the path must start with /"
            case .emptySegment: "the path contains an empty segment (// or a trailing /)"
            case .dotSegment: "the path contains a . or .. segment"
            case .encodedSlash: "the path contains an encoded slash or backslash"
            case .badEncoding: "the path contains a malformed percent-encoding"
            case .forbiddenCharacter: "the path contains a forbidden character"
            }
        }
    }

    /// Strips the query, decodes percent-encoded unreserved characters, upper-cases the
    /// remaining escapes and rejects anything ambiguous rather than resolving it.
    public static func normalize(_ raw: String) -> Result<String, Rejection> {
        var path = Substring(raw)
        if let q = path.firstIndex(where: { $0 == "?" || $0 == "#" }) { path = path[..<q] }
        guard !path.isEmpty else { return .failure(.empty) }
        guard path.first == "/" else { return .failure(.notAbsolute) }
        if path == "/" { return .success("/") }

        var segments: [String] = []
        let rawSegments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for rawSegment in rawSegments {
            guard !rawSegment.isEmpty else { return .failure(.emptySegment) }
            switch decodeSegment(rawSegment) {
            case .failure(let rejection): return .failure(rejection)
            case .success(let segment):
                if segment == "." || segment == ".." { return .failure(.dotSegment) }
                segments.append(segment)
            }
        }
        return .success("/" + segments.joined(separator: "/"))
    }

    /// Splits an already-normalized path into segments.
    public static func segments(_ normalized: String) -> [Substring] {
        normalized == "/" ? [] : normalized.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
    }

    private static func isUnreserved(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
            || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x41 + 10
        case 0x61...0x66: b - 0x61 + 10
        default: nil
        }
    }

    private static func decodeSegment(_ segment: Substring) -> Result<String, Rejection> {
        let bytes = Array(segment.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b < 0x20 || b == 0x7F || b == 0x5C { return .failure(.forbiddenCharacter) }
            if b == 0x25 {  // %
                guard i + 2 < bytes.count, let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) else {
                    return .failure(.badEncoding)
                }
                let decoded = hi << 4 | lo
                if decoded == 0x2F || decoded == 0x5C { return .failure(.encodedSlash) }
                if decoded < 0x20 || decoded == 0x7F { return .failure(.forbiddenCharacter) }
                if isUnreserved(decoded) {
                    out.append(decoded)
                } else {
                    out.append(contentsOf: Array("%".utf8) + hexDigits(decoded))
                }
                i += 3
                continue
            }
            out.append(b)
            i += 1
        }
        return .success(String(decoding: out, as: UTF8.self))
    }

    private static func hexDigits(_ b: UInt8) -> [UInt8] {
        let digits = Array("0123456789ABCDEF".utf8)
        return [digits[Int(b >> 4)], digits[Int(b & 0x0F)]]
    }
}
