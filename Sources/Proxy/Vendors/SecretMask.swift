import NIOCore

/// The second layer of "no vendor credential ever reaches an agent" (DESIGN §7), behind the credential endpoint
/// class: masks the tenant's own secret wherever it appears in an answer, and the values of the vendor's known secret
/// fields (`"auth_token": "…"`) in answers read whole (all but streamed answers over 256 KiB or of unknown length). Masks keep the length (`*` for each byte), so a streamed
/// answer keeps its Content-Length.
struct SecretMask: Sendable {
    let secrets: [[UInt8]]
    /// `"name"` with its quotes, as the field appears in JSON.
    let fields: [[UInt8]]

    init(secrets: [String], fields: [String]) {
        // A secret shorter than 8 bytes would mask ordinary text; vendors' secrets are 32 bytes or more.
        self.secrets = secrets.map { Array($0.utf8) }.filter { $0.count >= 8 }
        self.fields = fields.map { Array("\"\($0)\"".utf8) }
    }

    var longestSecret: Int { secrets.map(\.count).max() ?? 0 }
    /// Streamed answers up to this length (by their Content-Length) are read whole and masked like the others.
    static let wholeAnswerLimit = 256 << 10

    /// Masks a whole answer; returns nil when nothing was masked (the buffer can be passed on as it is).
    func masked(_ buffer: ByteBuffer) -> ByteBuffer? {
        var bytes = Array(buffer.readableBytesView)
        let secretsFound = maskSecrets(&bytes)
        let fieldsFound = maskFields(&bytes)
        let changed = secretsFound || fieldsFound
        return changed ? ByteBuffer(bytes: bytes) : nil
    }

    /// Every occurrence of a secret in `bytes`, overwritten.
    @discardableResult
    func maskSecrets(_ bytes: inout [UInt8]) -> Bool {
        var changed = false
        for secret in secrets {
            var from = 0
            while let at = Self.find(secret, in: bytes, from: from) {
                for i in at..<(at + secret.count) { bytes[i] = UInt8(ascii: "*") }
                from = at + secret.count
                changed = true
            }
        }
        return changed
    }

    /// The string value after each secret field name (`"secret" : "whsec_…"`), overwritten up to its closing quote.
    func maskFields(_ bytes: inout [UInt8]) -> Bool {
        var changed = false
        for field in fields {
            var from = 0
            while let at = Self.find(field, in: bytes, from: from) {
                var i = at + field.count
                while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { from = at + 1; continue }
                i += 1
                while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { from = i; continue }
                i += 1
                while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                    // An escaped character is masked with its backslash, so the string still ends where it ended.
                    if bytes[i] == UInt8(ascii: "\\"), i + 1 < bytes.count { bytes[i] = UInt8(ascii: "*"); i += 1 }
                    bytes[i] = UInt8(ascii: "*")
                    i += 1
                    changed = true
                }
                from = i
            }
        }
        return changed
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard let first = needle.first, needle.count <= haystack.count else { return nil }
        var i = from
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == first {
                var j = 1
                while j < needle.count, haystack[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }

    /// Masks a streamed answer chunk by chunk: the last `longestSecret - 1` bytes wait for the next chunk, so a secret
    /// split between two chunks is still found.
    struct Stream {
        let mask: SecretMask
        var carry: [UInt8] = []

        mutating func next(_ chunk: ByteBuffer) -> ByteBuffer {
            var bytes = carry + Array(chunk.readableBytesView)
            mask.maskSecrets(&bytes)
            let keep = min(bytes.count, max(0, mask.longestSecret - 1))
            carry = Array(bytes[(bytes.count - keep)...])
            return ByteBuffer(bytes: bytes[..<(bytes.count - keep)])
        }

        mutating func finish() -> ByteBuffer {
            defer { carry = [] }
            return ByteBuffer(bytes: carry)
        }
    }
}
