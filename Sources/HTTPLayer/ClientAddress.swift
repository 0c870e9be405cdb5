#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Hummingbird
import NIOCore
import KeybrakeCore

/// Which address a per-client limit counts (signups): the peer, or — only when the peer is one of the deployment's
/// own proxies — the client that proxy names in the one header it writes (`KEYBRAKE_CLIENT_ADDRESS_HEADER`:
/// `X-Forwarded-For` by default, or `Forwarded`). The other header is never read: a proxy that appends to one passes
/// the other through as the client wrote it, so a fallback would count whatever address the client chose. Headers
/// from anyone else are ignored. IPv6 clients are grouped by /64: one host owns at least that.
public struct TrustedProxies: Sendable, Equatable {
    /// The header the deployment's proxy writes.
    public enum Header: String, Sendable, Equatable, CaseIterable {
        case xForwardedFor = "x-forwarded-for"
        case forwarded
    }

    struct Network: Sendable, Equatable {
        var bytes: [UInt8]
        var prefix: Int

        func contains(_ address: [UInt8]) -> Bool {
            guard address.count == bytes.count else { return false }
            var bits = prefix
            for i in 0..<bytes.count where bits > 0 {
                let mask: UInt8 = bits >= 8 ? 0xFF : ~(0xFF >> UInt8(bits))
                if address[i] & mask != bytes[i] & mask { return false }
                bits -= 8
            }
            return true
        }
    }

    let networks: [Network]
    public var header: Header = .xForwardedFor

    public static let none = TrustedProxies(networks: [])

    init(networks: [Network]) { self.networks = networks }

    /// `10.0.0.0/8, 127.0.0.1, ::1, fd00::/8`; nil if an entry is not an address or CIDR.
    public init?(parsing list: String, header: Header = .xForwardedFor) {
        self.header = header
        var networks: [Network] = []
        for entry in list.split(separator: ",") {
            let text = entry.trimmingWhitespace()
            guard !text.isEmpty else { continue }
            let parts = text.split(separator: "/", maxSplits: 1)
            guard let bytes = Self.parse(String(parts[0])) else { return nil }
            let prefix = parts.count == 2 ? Int(parts[1]) : bytes.count * 8
            guard let prefix, (0...bytes.count * 8).contains(prefix) else { return nil }
            networks.append(Network(bytes: bytes, prefix: prefix))
        }
        self.networks = networks
    }

    func isTrusted(_ address: [UInt8]) -> Bool { networks.contains { $0.contains(address) } }

    /// The key a per-client limit counts for a request from `peer` (an IP address) with these headers.
    public func clientKey(peer: String?, headers: HTTPFields) -> String {
        guard let peer, let peerBytes = Self.parse(peer) else { return peer ?? "unknown" }
        var client = peerBytes
        if isTrusted(peerBytes) {
            // Right to left: the nearest hop not run by the deployment is the client.
            let hops = Self.forwardedFor(headers, header: header)
            for hop in hops.reversed() {
                guard let bytes = Self.parse(hop) else { break }
                client = bytes
                if !isTrusted(bytes) { break }
            }
        }
        return Self.key(client)
    }

    /// Addresses named by `header`, in order: `Forwarded: for=…` (RFC 7239) or `X-Forwarded-For`. Every field line
    /// of it counts, in order (a proxy may add a line rather than extend one).
    static func forwardedFor(_ headers: HTTPFields, header: Header) -> [String] {
        switch header {
        case .forwarded:
            var out: [String] = []
            for line in headers[values: HTTPField.Name("Forwarded")!] {
                for element in line.split(separator: ",") {
                    for pair in element.split(separator: ";") {
                        let kv = pair.split(separator: "=", maxSplits: 1)
                        guard kv.count == 2, kv[0].trimmingWhitespace().lowercased() == "for" else { continue }
                        var value = kv[1].trimmingWhitespace()
                        value = value.trimmingCharacters(in: ["\""])
                        if value.hasPrefix("[") { value = String(value.dropFirst().prefix { $0 != "]" }) }   // [v6]:port
                        else if value.filter({ $0 == ":" }).count == 1 { value = String(value.prefix { $0 != ":" }) }   // v4:port
                        out.append(value)
                    }
                }
            }
            return out
        case .xForwardedFor:
            return headers[values: HTTPField.Name("X-Forwarded-For")!].flatMap { $0.split(separator: ",").map { $0.trimmingWhitespace() } }
        }
    }

    /// 4 or 16 bytes, or nil.
    static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            // An IPv4-mapped address is that IPv4 client.
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF { return Array(bytes[12...]) }
            return bytes
        }
        return nil
    }

    static func key(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map { String($0) }.joined(separator: ".") }
        let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        return groups.joined(separator: ":") + "::/64"
    }
}

/// A request's client as per-client limits count it (`TrustedProxies.clientKey`), worked out only when a limit
/// needs it: most requests never do (a verified token is served from the cache).
public struct RequestClient: Sendable {
    let peer: SocketAddress?
    let headers: HTTPFields
    let proxies: TrustedProxies

    public init(peer: SocketAddress?, headers: HTTPFields, proxies: TrustedProxies) {
        self.peer = peer
        self.headers = headers
        self.proxies = proxies
    }

    public init(_ request: Request, _ context: KeybrakeRequestContext, proxies: TrustedProxies) {
        self.init(peer: context.remoteAddress, headers: request.headers, proxies: proxies)
    }

    public var key: String { proxies.clientKey(peer: peer?.ipAddress, headers: headers) }
}
