import Foundation
import KeybrakeCore

/// Opaque page cursors: base64url of `<kind>:<id>` (the last row of the previous page), validated on the way
/// back in. Positioning by id lets the query read the row's own sort key, so cursors never lose precision.
public enum PageCursor {
    public static func encode(_ id: String, kind: String) -> String {
        Data("\(kind):\(id)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// The id inside a cursor of this kind whose id starts with `idPrefix` followed by base62; nil otherwise.
    public static func decode(_ text: String, kind: String, idPrefix: String) -> String? {
        guard text.count <= 200 else { return nil }
        var b64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard let data = Data(base64Encoded: b64), let s = String(data: data, encoding: .utf8), s.hasPrefix(kind + ":" + idPrefix) else {
            return nil
        }
        let id = s.dropFirst(kind.count + 1)
        return Identifier.isBase62(id.dropFirst(idPrefix.count)) ? String(id) : nil
    }

    /// The text inside a cursor of this kind (a cursor that positions by a name, not an id); nil if it is not one.
    public static func decodeText(_ text: String, kind: String) -> String? {
        guard text.count <= 800 else { return nil }
        var b64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard let data = Data(base64Encoded: b64), let s = String(data: data, encoding: .utf8), s.hasPrefix(kind + ":") else {
            return nil
        }
        return String(s.dropFirst(kind.count + 1))
    }
}
