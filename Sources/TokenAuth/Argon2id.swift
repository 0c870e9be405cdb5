import CArgon2

/// argon2id via Debian's libargon2, with the OWASP parameters (m = 19 MiB, t = 2, p = 1).
public struct Argon2id: Sendable {
    public var iterations: UInt32
    public var memoryKiB: UInt32
    public var parallelism: UInt32
    static let saltLength = 16
    static let hashLength = 32

    public static let owasp = Argon2id(iterations: 2, memoryKiB: 19_456, parallelism: 1)

    public init(iterations: UInt32, memoryKiB: UInt32, parallelism: UInt32) {
        self.iterations = iterations
        self.memoryKiB = memoryKiB
        self.parallelism = parallelism
    }

    public struct Failure: Error, CustomStringConvertible {
        public let code: Int32
        public var description: String { "argon2 error \(code): \(String(cString: argon2_error_message(code)))" }
    }

    /// Encoded hash (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) of `password` with a random salt.
    public func hash(_ password: String) throws -> String {
        var rng = SystemRandomNumberGenerator()
        let salt = (0..<Argon2id.saltLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let encodedLength = argon2_encodedlen(
            iterations, memoryKiB, parallelism, UInt32(Argon2id.saltLength), UInt32(Argon2id.hashLength), Argon2_id
        )
        var encoded = [CChar](repeating: 0, count: encodedLength)
        let pwd = Array(password.utf8)
        let rc = pwd.withUnsafeBytes { pwdBuf in
            salt.withUnsafeBytes { saltBuf in
                argon2id_hash_encoded(
                    iterations, memoryKiB, parallelism,
                    pwdBuf.baseAddress, pwdBuf.count, saltBuf.baseAddress, saltBuf.count,
                    Argon2id.hashLength, &encoded, encodedLength
                )
            }
        }
        guard rc == ARGON2_OK.rawValue else { throw Failure(code: rc) }
        return String(cString: encoded)
    }

    /// Constant-time verification against an encoded hash; false for a mismatch or a malformed hash.
    public static func verify(_ password: String, encoded: String) -> Bool {
        let pwd = Array(password.utf8)
        let rc = pwd.withUnsafeBytes { pwdBuf in
            argon2id_verify(encoded, pwdBuf.baseAddress, pwdBuf.count)
        }
        return rc == ARGON2_OK.rawValue
    }
}
