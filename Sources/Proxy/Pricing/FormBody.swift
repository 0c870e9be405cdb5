import Foundation
import KeybrakeCore

/// An `application/x-www-form-urlencoded` body as the Stripe and Twilio SDKs send it.
/// Bracketed keys (`metadata[order]`, `expand[]`) stay literal keys: pricing only needs flat
/// look-ups, and keeping every pair in order lets the canonical form lose nothing.
public struct FormBody: Sendable {
    private var storage: [Pair]

    private struct Pair: Sendable {
        var key: String
        var value: String
    }

    public init() { storage = [] }

    /// Pairs already decoded (the adapters' strict reading).
    public init(pairs: [(String, String)]) { storage = pairs.map { Pair(key: $0.0, value: $0.1) } }

    public init(parsing data: Data) {
        storage = Self.rawPairs(data).map {
            Pair(key: String(decoding: $0.key, as: UTF8.self), value: String(decoding: $0.value, as: UTF8.self))
        }
    }

    /// Pairs in body order, repeated keys included.
    public var pairs: [(String, String)] { storage.map { ($0.key, $0.value) } }

    public func first(_ key: String) -> String? { storage.first { $0.key == key }?.value }

    public func all(_ key: String) -> [String] { storage.filter { $0.key == key }.map(\.value) }

    /// Decoded pairs as bytes: the canonical form uses these, because turning invalid UTF-8 into
    /// U+FFFD would make `%FE` and `%FF` look identical.
    static func rawPairs(_ data: Data) -> [(key: [UInt8], value: [UInt8])] {
        var result: [(key: [UInt8], value: [UInt8])] = []
        for field in data.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let bytes = Array(field)
            if let eq = bytes.firstIndex(of: UInt8(ascii: "=")) {
                result.append((decode(bytes[..<eq]), decode(bytes[(eq + 1)...])))
            } else {
                result.append((decode(bytes[...]), []))
            }
        }
        return result
    }

    /// `+` is a space; a `%` not followed by two hex digits is kept literally (lenient, like most servers).
    static func decode(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
            } else if b == UInt8(ascii: "%"), i + 2 < bytes.endIndex,
                      let hi = Hex.value(bytes[i + 1]), let lo = Hex.value(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
                continue
            } else {
                out.append(b)
            }
            i += 1
        }
        return out
    }
}
