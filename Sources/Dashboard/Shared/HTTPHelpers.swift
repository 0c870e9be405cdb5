import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore

/// An `application/x-www-form-urlencoded` body, as a browser posts a form.
struct FormBody: Sendable {
    private(set) var values: [String: [String]] = [:]

    init(values: [String: [String]]) { self.values = values }

    init(parsing text: String) {
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = Self.decode(parts[0])
            let value = parts.count > 1 ? Self.decode(parts[1]) : ""
            values[key, default: []].append(value)
        }
    }

    static func decode(_ s: Substring) -> String {
        let spaced = s.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }

    /// Reads the request body (bounded by the context's upload limit).
    static func read(_ request: Request, context: KeybrakeRequestContext) async throws -> FormBody {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: context.maxUploadSize)
        } catch {
            throw KeybrakeError(status: 413, code: .bodyTooLarge, message: "The form is too large.")
        }
        return FormBody(parsing: String(buffer: buffer))
    }

    /// The last value of a field, trimmed; nil when absent.
    subscript(_ name: String) -> String? {
        values[name]?.last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// The field, or nil when absent or blank.
    func nonEmpty(_ name: String) -> String? {
        guard let v = self[name], !v.isEmpty else { return nil }
        return v
    }
}

/// Constant-time string comparison for secrets (CSRF tokens).
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<x.count { diff |= x[i] ^ y[i] }
    return diff == 0
}

enum Page {
    /// An HTML page. Everything the dashboard serves is private to the signed-in tenant: never cached.
    static func html(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// 303 See Other: the Post/Redirect/Get answer to a form submission (and the way to the sign-in page).
    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location])
    }
}

/// RFC 3986 unreserved characters: everything else in a URL component is percent-encoded.
let unreservedCharacters: CharacterSet = {
    var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    allowed.insert(charactersIn: "-._~")
    return allowed
}()

/// Builds `?a=1&b=2` from non-empty values, percent-encoded (the template escapes it again for the attribute).
func queryString(_ items: [(String, String?)]) -> String {
    let allowed = unreservedCharacters
    let parts = items.compactMap { name, value -> String? in
        guard let value, !value.isEmpty else { return nil }
        return name + "=" + (value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")
    }
    return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
}

/// Percent-encodes one path segment (ids come from the database, but a link must never break out of its path).
func pathSegment(_ s: String) -> String {
    // Ids are base62 with a prefix: the common case needs no encoding at all.
    if s.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F }) { return s }
    return s.addingPercentEncoding(withAllowedCharacters: unreservedCharacters) ?? ""
}

enum Format {
    /// `2026-05-01 12:34:56 UTC`.
    static func time(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var t = tm()
        gmtime_r(&seconds, &t)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(t.tm_year + 1900)-\(two(t.tm_mon + 1))-\(two(t.tm_mday)) \(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)) UTC"
    }

    /// `$12.50`, `$0.0083`.
    static func usd(_ m: MicroUSD) -> String { "$" + m.dollarString }

    /// Cap values in a form field: plain decimal dollars, empty for "no limit".
    static func field(_ m: MicroUSD?) -> String { m.map(\.dollarString) ?? "" }

    /// `1,234`.
    static func count(_ n: Int64) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (n < 0 ? "-" : "") + out
    }
}
