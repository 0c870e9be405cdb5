import Foundation

/// Which addresses are public (a webhook may go there) and which are not: loopback, private, link-local, carrier-
/// grade NAT, multicast, documentation and other reserved ranges (IANA special-purpose registries), IPv4-mapped
/// IPv6 judged as its IPv4 address.
public enum IPAddressRules {
    public enum Address: Equatable, Sendable {
        case v4([UInt8])
        case v6([UInt8])
    }

    public static func parse(_ text: String) -> Address? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return .v4(withUnsafeBytes(of: &v4) { Array($0) })
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return .v6(withUnsafeBytes(of: &v6) { Array($0) })
        }
        return nil
    }

    public static func isPublic(_ address: Address) -> Bool {
        switch address {
        case .v4(let b): return isPublicV4(b)
        case .v6(let b):
            // ::ffff:a.b.c.d (mapped) and the NAT64 prefix 64:ff9b::/96 carry an IPv4 address.
            if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff { return isPublicV4(Array(b[12...])) }
            if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b { return isPublicV4(Array(b[12...])) }
            if b.allSatisfy({ $0 == 0 }) { return false }                                   // ::
            if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return false }             // ::1
            if b[0] & 0xfe == 0xfc { return false }                                          // fc00::/7 unique local
            if b[0] == 0xfe && b[1] & 0xc0 == 0x80 { return false }                          // fe80::/10 link-local
            if b[0] == 0xff { return false }                                                 // multicast
            if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8 { return false } // 2001:db8::/32 documentation
            if b[0] == 0x01 && b[1...7].allSatisfy({ $0 == 0 }) { return false }             // 100::/64 discard
            return true
        }
    }

    static func isPublicV4(_ b: [UInt8]) -> Bool {
        switch (b[0], b[1], b[2]) {
        case (0, _, _), (10, _, _), (127, _, _): return false
        case (100, 64...127, _): return false                // carrier-grade NAT
        case (169, 254, _): return false                     // link-local (cloud metadata lives here)
        case (172, 16...31, _): return false
        case (192, 0, 0), (192, 0, 2), (192, 88, 99): return false
        case (192, 168, _): return false
        case (198, 18...19, _): return false                 // benchmarking
        case (198, 51, 100), (203, 0, 113): return false     // documentation
        case (224...255, _, _): return false                 // multicast, reserved, broadcast
        default: return true
        }
    }

    /// Every address `host` resolves to (getaddrinfo, on a thread of its own: it blocks).
    public static func resolve(_ host: String, port: Int) async throws -> [Address] {
        if let literal = parse(host) { return [literal] }
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                var hints = addrinfo()
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
                var result: UnsafeMutablePointer<addrinfo>?
                let rc = getaddrinfo(host, String(port), &hints, &result)
                guard rc == 0, let first = result else {
                    continuation.resume(throwing: ResolveError(host: host))
                    return
                }
                defer { freeaddrinfo(first) }
                var out: [Address] = []
                var next: UnsafeMutablePointer<addrinfo>? = first
                while let ai = next {
                    if ai.pointee.ai_family == AF_INET, let sa = ai.pointee.ai_addr {
                        sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                            var a = sin.pointee.sin_addr
                            out.append(.v4(withUnsafeBytes(of: &a) { Array($0) }))
                        }
                    } else if ai.pointee.ai_family == AF_INET6, let sa = ai.pointee.ai_addr {
                        sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                            var a = sin6.pointee.sin6_addr
                            out.append(.v6(withUnsafeBytes(of: &a) { Array($0) }))
                        }
                    }
                    next = ai.pointee.ai_next
                }
                continuation.resume(returning: out)
            }
        }
    }

    public struct ResolveError: Error, CustomStringConvertible {
        public let host: String
        public var description: String { "could not resolve \(host)" }
    }
}
