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

    private static func decodeSegment(_ segment: Substring) -> Result<String, Rejection> {
        let bytes = Array(segment.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b < 0x20 || b == 0x7F || b == 0x5C { return .failure(.forbiddenCharacter) }
            if b == 0x25 {  // %
                guard i + 2 < bytes.count, let hi = Hex.value(bytes[i + 1]), let lo = Hex.value(bytes[i + 2]) else {
                    return .failure(.badEncoding)
                }
                let decoded = hi << 4 | lo
                if decoded == 0x2F || decoded == 0x5C { return .failure(.encodedSlash) }
                if decoded < 0x20 || decoded == 0x7F { return .failure(.forbiddenCharacter) }
                if PercentEncoding.isUnreserved(decoded) {
                    out.append(decoded)
                } else {
                    PercentEncoding.appendEscaped(decoded, to: &out)
                }
                i += 3
                continue
            }
            out.append(b)
            i += 1
        }
        return .success(String(decoding: out, as: UTF8.self))
    }
}
