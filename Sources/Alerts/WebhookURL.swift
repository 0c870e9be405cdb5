import Foundation
import KeybrakeCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Where webhooks may go: https to a public address, unless `KEYBRAKE_WEBHOOK_ALLOW_PRIVATE` (tests, on-prem), which
/// also allows http and private, loopback and link-local addresses. Checked when an endpoint is saved (the URL, and an
/// address literal in it) and again before every delivery on the addresses the host name resolves to then (DNS
/// rebinding: a name that was public at creation may point inside later).
public struct WebhookURLPolicy: Sendable {
    public var allowPrivate: Bool
    public static let maxLength = 2048

    public init(allowPrivate: Bool) { self.allowPrivate = allowPrivate }

    public func validate(_ text: String) throws(KeybrakeError) -> URL {
        guard text.count <= Self.maxLength, let url = URL(string: text), let scheme = url.scheme?.lowercased(),
              let host = url.host, !host.isEmpty else {
            throw .invalidRequest("url must be an absolute https URL such as https://hooks.example.com/keybrake.", field: "url")
        }
        guard scheme == "https" || (allowPrivate && scheme == "http") else {
            throw .invalidRequest("url must use https (http only when KEYBRAKE_WEBHOOK_ALLOW_PRIVATE=true).", field: "url")
        }
        guard url.user == nil, url.password == nil, url.fragment == nil else {
            throw .invalidRequest("url may not carry credentials (user:password@) or a #fragment.", field: "url")
        }
        if !allowPrivate {
            let name = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            if name == "localhost" || name.hasSuffix(".localhost") || name.hasSuffix(".internal") || name.hasSuffix(".local") {
                throw .invalidRequest("url must point at a public host, not \(name).", field: "url")
            }
            if let bytes = IPAddress.parse(name), !IPAddress.isPublic(bytes) {
                throw .invalidRequest("url must point at a public address, not a private, loopback or link-local one.", field: "url")
            }
        }
        return url
    }

    /// Resolves `host` and refuses it unless every address is public (or private ones are allowed). Returns a reason
    /// to refuse, or nil.
    public func refusal(host: String) async -> String? {
        if allowPrivate { return nil }
        let name = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if let literal = IPAddress.parse(name) { return IPAddress.isPublic(literal) ? nil : "address is not public" }
        let addresses: [[UInt8]]
        do {
            addresses = try await NIOThreadPool.singleton.runIfActive { IPAddress.resolve(name) }
        } catch { return "could not resolve the host" }
        if addresses.isEmpty { return "could not resolve the host" }
        return addresses.allSatisfy(IPAddress.isPublic) ? nil : "the host resolves to a private, loopback or link-local address"
    }
}

/// IPv4 (4 bytes) and IPv6 (16 bytes) addresses: parsing, resolution and the public/non-public rule.
public enum IPAddress {
    public static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    static func resolve(_ host: String) -> [[UInt8]] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0 else { return [] }
        defer { freeaddrinfo(result) }
        var out: [[UInt8]] = []
        var p = result
        while let info = p {
            if info.pointee.ai_family == AF_INET, let sa = info.pointee.ai_addr {
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    out.append(withUnsafeBytes(of: &a) { Array($0) })
                }
            } else if info.pointee.ai_family == AF_INET6, let sa = info.pointee.ai_addr {
                sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                    var a = sin.pointee.sin6_addr
                    out.append(withUnsafeBytes(of: &a) { Array($0) })
                }
            }
            p = info.pointee.ai_next
        }
        return out
    }

    /// False for this-network, private (RFC 1918), carrier-grade NAT, loopback, link-local, benchmarking, multicast
    /// and reserved IPv4 ranges, and their IPv6 counterparts (loopback, unspecified, unique-local, link-local,
    /// multicast, IPv4-mapped/compatible forms of the above, NAT64 of the above).
    public static func isPublic(_ a: [UInt8]) -> Bool {
        if a.count == 4 { return isPublicV4(a[0], a[1], a[2], a[3]) }
        guard a.count == 16 else { return false }
        if a.allSatisfy({ $0 == 0 }) { return false }                               // ::
        if a[0..<15].allSatisfy({ $0 == 0 }) && a[15] == 1 { return false }         // ::1
        if a[0..<10].allSatisfy({ $0 == 0 }) && a[10] == 0xFF && a[11] == 0xFF {    // ::ffff:a.b.c.d
            return isPublicV4(a[12], a[13], a[14], a[15])
        }
        if a[0..<12].allSatisfy({ $0 == 0 }) { return isPublicV4(a[12], a[13], a[14], a[15]) } // ::a.b.c.d
        if a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xFF && a[3] == 0x9B { return isPublicV4(a[12], a[13], a[14], a[15]) } // 64:ff9b::/96
        if a[0] & 0xFE == 0xFC { return false }                                     // fc00::/7
        if a[0] == 0xFE && a[1] & 0xC0 == 0x80 { return false }                     // fe80::/10
        if a[0] == 0xFE && a[1] & 0xC0 == 0xC0 { return false }                     // fec0::/10 (site-local)
        if a[0] == 0xFF { return false }                                            // multicast
        if a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0D && a[3] == 0xB8 { return false } // documentation
        return true
    }

    static func isPublicV4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> Bool {
        switch a {
        case 0, 10, 127: return false
        case 100 where b & 0xC0 == 64: return false                                 // 100.64/10
        case 169 where b == 254: return false
        case 172 where b & 0xF0 == 16: return false
        case 192 where b == 168: return false
        case 192 where b == 0 && (c == 0 || c == 2): return false
        case 198 where b == 18 || b == 19: return false
        case 198 where b == 51 && c == 100: return false
        case 203 where b == 0 && c == 113: return false
        case 224...255: return false
        default: return true
        }
    }
}
