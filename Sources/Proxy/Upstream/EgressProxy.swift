import AsyncHTTPClient
import Foundation

/// The outbound proxy, as deployments configure it: `HTTPS_PROXY` for https upstreams, `HTTP_PROXY` for http ones
/// (lower-case names win, as curl reads them), `NO_PROXY` for hosts reached directly. Proxies are spoken to with
/// `CONNECT` (TLS to the vendor stays end to end); `socks5://` is accepted too. A proxy reached over TLS
/// (`https://proxy`) is not supported by AsyncHTTPClient and is refused at start-up.
public struct EgressProxy: Sendable, Equatable {
    public struct Server: Sendable, Equatable {
        public enum Kind: Sendable, Equatable { case http, socks5 }
        public var kind: Kind
        public var host: String
        public var port: Int
        public var username: String?
        public var password: String?
    }

    public var https: Server?
    public var http: Server?
    /// `NO_PROXY` entries, lower-cased: `*`, host names (matching the name and its subdomains; a leading `.` is
    /// optional), IP addresses, each optionally with `:port`.
    public var noProxy: [String] = []

    public init(https: Server? = nil, http: Server? = nil, noProxy: [String] = []) {
        self.https = https
        self.http = http
        self.noProxy = noProxy
    }

    public struct ConfigError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Reads the conventional variables. Errors name the variable, never its value (it may hold a password).
    public static func fromEnvironment(_ env: [String: String]) throws -> EgressProxy {
        func value(_ name: String) -> (String, String)? {
            for n in [name.lowercased(), name] { if let v = env[n]?.trimmingCharacters(in: .whitespaces), !v.isEmpty { return (n, v) } }
            return nil
        }
        var proxy = EgressProxy()
        if let (name, text) = value("HTTPS_PROXY") { proxy.https = try parse(text, variable: name) }
        if let (name, text) = value("HTTP_PROXY") { proxy.http = try parse(text, variable: name) }
        if let (_, text) = value("NO_PROXY") {
            proxy.noProxy = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
        }
        return proxy
    }

    static func parse(_ text: String, variable: String) throws -> Server {
        let withScheme = text.contains("://") ? text : "http://" + text
        guard let url = URLComponents(string: withScheme), let host = url.host, !host.isEmpty else {
            throw ConfigError(description: "\(variable) must be a proxy URL such as http://proxy.internal:3128")
        }
        let kind: Server.Kind
        switch url.scheme?.lowercased() {
        case "http": kind = .http
        case "socks5", "socks5h": kind = .socks5
        case "https": throw ConfigError(description: "\(variable): a proxy reached over TLS (https://) is not supported; use http:// (the tunnel to the vendor is TLS end to end)")
        default: throw ConfigError(description: "\(variable) must use http:// or socks5://")
        }
        if kind == .socks5, url.user != nil { throw ConfigError(description: "\(variable): SOCKS5 with a user name and password is not supported") }
        return Server(kind: kind, host: host, port: url.port ?? (kind == .socks5 ? 1080 : 80),
                      username: url.percentEncodedUser.map { $0.removingPercentEncoding ?? $0 },
                      password: url.percentEncodedPassword.map { $0.removingPercentEncoding ?? $0 })
    }

    /// Whether `host` (and `port`) is reached directly: listed in `NO_PROXY`, or loopback (as Go's
    /// `ProxyFromEnvironment` does: a proxy cannot reach this machine's own 127.0.0.1).
    public func bypasses(host rawHost: String, port: Int) -> Bool {
        var host = rawHost.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" || host.hasSuffix(".localhost") || host.hasPrefix("127.") || host == "::1" { return true }
        for entry in noProxy {
            if entry == "*" { return true }
            var name = entry
            if let colon = name.lastIndex(of: ":"), !name.hasPrefix("["), name.filter({ $0 == ":" }).count == 1 {
                guard Int(name[name.index(after: colon)...]) == port else { continue }
                name = String(name[..<colon])
            }
            if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
            if name.hasPrefix("*.") { name.removeFirst() }
            if name.hasPrefix(".") { name.removeFirst() }
            if name.isEmpty { continue }
            if host == name || host.hasSuffix("." + name) { return true }
        }
        return false
    }

    /// The proxy for one upstream URL, or nil to connect directly.
    public func server(for url: URL) -> Server? {
        guard let host = url.host else { return nil }
        let https = url.scheme?.lowercased() == "https"
        let port = url.port ?? (https ? 443 : 80)
        guard let server = https ? self.https : self.http else { return nil }
        return bypasses(host: host, port: port) ? nil : server
    }

    func clientProxy(for url: URL) -> HTTPClient.Configuration.Proxy? {
        guard let server = server(for: url) else { return nil }
        switch server.kind {
        case .socks5: return .socksServer(host: server.host, port: server.port)
        case .http:
            let auth: HTTPClient.Authorization? = server.username.map { .basic(username: $0, password: server.password ?? "") }
            return .server(host: server.host, port: server.port, authorization: auth)
        }
    }
}
