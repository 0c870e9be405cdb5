/// Public identifiers: a kind prefix plus random base62 (`ten_…`, `key_…`, `atk_…`).
public enum Identifier {
    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// `count` characters drawn uniformly from base62 using the system CSPRNG.
    public static func randomBase62(count: Int) -> String {
        var rng = SystemRandomNumberGenerator()
        var out = [UInt8]()
        out.reserveCapacity(count)
        // One CSPRNG call yields eight bytes (each call is a getrandom syscall; ids are made on every request).
        while out.count < count {
            var word = rng.next()
            for _ in 0..<8 where out.count < count {
                // Rejection sampling keeps the distribution uniform (248 = 62 * 4).
                let byte = UInt8(truncatingIfNeeded: word)
                word >>= 8
                if byte < 248 { out.append(alphabet[Int(byte % 62)]) }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func isBase62(_ s: Substring) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) }
    }

    public static func make(_ prefix: String) -> String { "\(prefix)_\(randomBase62(count: 16))" }
}
