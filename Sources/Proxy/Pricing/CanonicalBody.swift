import Foundation
import KeybrakeCore

/// The body form used by the duplicate guard and the idempotency check (DESIGN §7): requests that
/// differ only in parameter order, JSON key order or whitespace canonicalise to the same bytes;
/// any difference in a value gives different bytes.
public enum CanonicalBody {
    public static func canonical(contentType: String?, body: Data) -> Data {
        let type = contentType?.lowercased() ?? ""
        if type.contains("json") {
            // Invalid JSON is forwarded as is, so it is compared as is.
            guard let value = ExactJSON.parse(body) else { return body }
            var out: [UInt8] = []
            write(value, into: &out)
            return Data(out)
        }
        if type.contains("application/x-www-form-urlencoded") {
            return canonicalForm(body)
        }
        return body
    }

    /// The bytes to hash (the caller owns SHA-256: Foundation has none on Linux).
    /// Parts are tenant, vendor, method, normalized path…; none can contain a newline.
    public static func fingerprintInput(parts: [String], canonicalBody: Data) -> Data {
        var data = Data((parts.joined(separator: "\n") + "\n").utf8)
        data.append(canonicalBody)
        return data
    }

    /// Stable sort by key only: the relative order of a repeated key is kept because it can carry
    /// meaning (`items[][price]=a&items[][quantity]=1&items[][price]=b…` pairs by position), and
    /// sorting those values would make two different orders look like one duplicate.
    static func canonicalForm(_ body: Data) -> Data {
        let pairs = FormBody.rawPairs(body).enumerated().sorted { l, r in
            if l.element.key != r.element.key { return l.element.key.lexicographicallyPrecedes(r.element.key) }
            return l.offset < r.offset
        }
        var out: [UInt8] = []
        for (i, pair) in pairs.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "&")) }
            PercentEncoding.encode(pair.element.key, into: &out)
            out.append(UInt8(ascii: "="))
            PercentEncoding.encode(pair.element.value, into: &out)
        }
        return Data(out)
    }

    /// Members sorted by key bytes (stable, so duplicate keys keep their order); numbers as written.
    static func write(_ value: ExactJSON, into out: inout [UInt8]) {
        switch value {
        case .object(let members):
            let sorted = members.enumerated().sorted { l, r in
                let lk = Array(l.element.key.utf8), rk = Array(r.element.key.utf8)
                if lk != rk { return lk.lexicographicallyPrecedes(rk) }
                return l.offset < r.offset
            }
            out.append(UInt8(ascii: "{"))
            for (i, member) in sorted.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                writeString(member.element.key, into: &out)
                out.append(UInt8(ascii: ":"))
                write(member.element.value, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .string(let s): writeString(s, into: &out)
        case .number(let token): out.append(contentsOf: Array(token.utf8))
        case .bool(let b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case .null: out.append(contentsOf: Array("null".utf8))
        }
    }

    /// One spelling per string: `"\u00e9"` and `"é"` both come out as the UTF-8 bytes of é.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case ..<0x20:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30])
                Hex.append(b, to: &out)
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
