import AsyncHTTPClient
import Foundation
import KeybrakeCore
import NIOCore
import NIOHTTP1

/// What became of one POST to a receiver.
public struct PostResult: Sendable, Equatable {
    /// The receiver's status; nil when it did not answer (timeout, refused, address not allowed).
    public var status: Int?
    /// Why there is no 2xx, in words the tenant reads in `GET …/deliveries` (never a secret).
    public var error: String?
    public var ok: Bool { status.map { (200...299).contains($0) } ?? false }
    public init(status: Int?, error: String?) {
        self.status = status
        self.error = error
    }
}

/// Posts one signed webhook. The delivery service takes any transport, so tests can stand in for the network.
public protocol WebhookTransport: Sendable {
    func post(url: String, headers: [(String, String)], body: ByteBuffer, timeout: Duration) async -> PostResult
}

/// AsyncHTTPClient, redirects never followed (a 3xx is a failure: a receiver must answer where it was registered),
/// and the receiver's address resolved and checked before each attempt unless private addresses are allowed.
public final class HTTPWebhookTransport: WebhookTransport {
    let client: HTTPClient
    let urls: WebhookURLPolicy

    public init(urls: WebhookURLPolicy) {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.decompression = .disabled
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 4
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.urls = urls
    }

    public func shutdown() async throws { try await client.shutdown() }

    public func post(url: String, headers: [(String, String)], body: ByteBuffer, timeout: Duration) async -> PostResult {
        let target: (host: String, port: Int)
        do { target = try urls.check(url) } catch { return PostResult(status: nil, error: "url not allowed: \(error.message)") }
        if !urls.allowPrivate {
            // DNS rebinding: the name may point somewhere else now than when the endpoint was saved.
            do {
                let addresses = try await IPAddressRules.resolve(target.host, port: target.port)
                guard !addresses.isEmpty, addresses.allSatisfy(IPAddressRules.isPublic) else {
                    return PostResult(status: nil, error: "\(target.host) resolves to a private or reserved address; not delivered")
                }
            } catch {
                return PostResult(status: nil, error: "could not resolve \(target.host)")
            }
        }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "user-agent", value: "Keybrake-Webhooks/1")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(body)
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
            // Read (and bound) the answer so the connection can be reused; its content is not kept.
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let status = Int(response.status.code)
            return PostResult(status: status, error: (200...299).contains(status) ? nil : "receiver answered \(status)")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return PostResult(status: nil, error: "timed out after \(timeout)")
        } catch {
            return PostResult(status: nil, error: "no answer: \(String(describing: error).prefix(200))")
        }
    }
}
