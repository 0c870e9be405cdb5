/// One allowlist entry: `METHOD /path` where `*` matches one segment and a final `**`
/// matches any rest (including nothing), or a Stripe operation alias such as `charges.create`.
public struct EndpointPattern: Sendable, Hashable, CustomStringConvertible {
    public enum Segment: Sendable, Hashable {
        case literal(String)
        case any        // *
        case anyRest    // ** (last only)
    }

    public static let methods: Set<String> = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "*"]

    /// Upper-case method, or "*" for any.
    public let method: String
    public let segments: [Segment]
    /// The text the tenant wrote (kept for display and error messages).
    public let source: String

    public var description: String { source }

    /// `METHOD /path` form of the pattern, whatever the tenant wrote.
    public var canonical: String {
        let path = segments.map { seg -> String in
            switch seg {
            case .literal(let s): s
            case .any: "*"
            case .anyRest: "**"
            }
        }.joined(separator: "/")
        return "\(method) /\(path)"
    }

    public enum ParseError: Error, Equatable, Sendable {
        case malformed(String)
        public var reason: String { if case .malformed(let r) = self { return r }; return "" }
    }

    /// Parses one entry. `vendor` enables vendor-specific aliases (Stripe operation names).
    public static func parse(_ text: String, vendor: Vendor) throws(ParseError) -> EndpointPattern {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { throw .malformed("an endpoint pattern is empty") }
        if !trimmed.contains(" ") {
            guard vendor == .stripe else {
                throw .malformed("'\(trimmed)' is not of the form 'METHOD /path' (operation aliases exist only for stripe)")
            }
            guard let (method, path) = StripeOperations.endpoint(forOperation: trimmed) else {
                throw .malformed("'\(trimmed)' is neither 'METHOD /path' nor a known Stripe operation such as charges.create")
            }
            return try parse(method: method, path: path, source: trimmed)
        }
        let parts = trimmed.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2 else { throw .malformed("'\(trimmed)' must be 'METHOD /path' with one space") }
        return try parse(method: String(parts[0]), path: String(parts[1]), source: trimmed)
    }

    static func parse(method rawMethod: String, path: String, source: String) throws(ParseError) -> EndpointPattern {
        let method = rawMethod.uppercased()
        guard methods.contains(method) else {
            throw .malformed("'\(rawMethod)' is not an HTTP method (use GET, POST, PUT, PATCH, DELETE, HEAD or *)")
        }
        guard path.hasPrefix("/") else { throw .malformed("the path in '\(source)' must start with /") }
        guard !path.contains("?"), !path.contains("#") else { throw .malformed("the path in '\(source)' must not contain a query") }
        let rawSegments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        var segments: [Segment] = []
        for (i, raw) in rawSegments.enumerated() {
            if raw == "**" {
                guard i == rawSegments.count - 1 else { throw .malformed("'**' may only be the last segment in '\(source)'") }
                segments.append(.anyRest)
            } else if raw == "*" {
                segments.append(.any)
            } else {
                guard !raw.isEmpty else { throw .malformed("the path in '\(source)' has an empty segment") }
                guard !raw.contains("*") else { throw .malformed("'*' must be a whole segment in '\(source)'") }
                // Literal segments are compared against normalized paths, so normalize them the same way.
                guard case .success(let norm) = PathNormalizer.normalize("/" + raw), norm.count > 1 else {
                    throw .malformed("the path in '\(source)' has an invalid segment '\(raw)'")
                }
                segments.append(.literal(String(norm.dropFirst())))
            }
        }
        return EndpointPattern(method: method, segments: segments, source: source)
    }

    /// Matches an upper-case method and a path already normalized by `PathNormalizer`.
    public func matches(method requestMethod: String, normalizedPath: String) -> Bool {
        guard method == "*" || method == requestMethod else { return false }
        let parts = PathNormalizer.segments(normalizedPath)
        var i = 0
        for seg in segments {
            switch seg {
            case .anyRest:
                return true
            case .any:
                guard i < parts.count else { return false }
            case .literal(let lit):
                guard i < parts.count, parts[i] == lit else { return false }
            }
            i += 1
        }
        return i == parts.count
    }
}

extension Array where Element == EndpointPattern {
    public func allows(method: String, normalizedPath: String) -> Bool {
        contains { $0.matches(method: method, normalizedPath: normalizedPath) }
    }
}

extension EndpointPattern {
    /// Whether every request this pattern matches is also matched by `other` (a child key's entry inside its
    /// parent's). Exact for one pattern against one pattern: `*` is one segment, a final `**` any rest.
    public func isContained(in other: EndpointPattern) -> Bool {
        guard other.method == "*" || other.method == method else { return false }
        var i = 0
        for theirs in other.segments {
            if case .anyRest = theirs { return true }
            guard i < segments.count else { return false }
            switch (segments[i], theirs) {
            case (.anyRest, _): return false            // any depth, against a pattern of fixed depth
            case (.literal(let a), .literal(let b)): guard a == b else { return false }
            case (.literal, .any), (.any, .any): break
            case (.any, .literal): return false
            case (_, .anyRest): return true
            }
            i += 1
        }
        return i == segments.count
    }
}

extension Array where Element == EndpointPattern {
    /// The first entry of `self` that no entry of `outer` contains, if any.
    public func firstNotContained(in outer: [EndpointPattern]) -> EndpointPattern? {
        first { inner in !outer.contains { inner.isContained(in: $0) } }
    }
}
