import Foundation
import KeybrakeCore

/// A vault key as stored: identity, status and policy (never the token).
public struct VaultKey: Sendable, Equatable {
    public enum Status: String, Sendable {
        case active
        case revoked
    }

    public let id: String
    public let tenantId: String
    public var status: Status
    public var policy: Policy {
        didSet { patterns = policy.endpointPatterns }
    }
    /// The allowlist parsed once per key row (the proxy checks it on every request, now mostly from memory).
    public private(set) var patterns: [EndpointPattern]
    public let createdAt: Date
    public var updatedAt: Date
    public var revokedAt: Date?
    /// Child keys (DESIGN §9): the chain from the root key to the parent, root first; empty for a root key.
    public var ancestorIds: [String] = []
    /// The run a child key was minted for; the default `run_id` of its audit rows.
    public var runId: String?
    /// The ancestors' rows, root first, as the proxy read them with the key (empty elsewhere).
    public var ancestors: [VaultKey] = []

    public var parentId: String? { ancestorIds.last }
    public var depth: Int { ancestorIds.count }

    public init(id: String, tenantId: String, status: Status, policy: Policy, createdAt: Date, updatedAt: Date,
                revokedAt: Date?, ancestorIds: [String] = [], runId: String? = nil) {
        self.id = id
        self.tenantId = tenantId
        self.status = status
        self.policy = policy
        self.patterns = policy.endpointPatterns
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.revokedAt = revokedAt
        self.ancestorIds = ancestorIds
        self.runId = runId
    }

    /// The key and its ancestors, the key first: every one of them must allow a request.
    public var chain: [VaultKey] { [self] + ancestors.reversed() }

    /// Whether any key of the chain has a USD limit: a child of a capped key is capped, whatever its own policy says.
    public var chainIsCapped: Bool { chain.contains { !$0.policy.isUncapped } }

    /// Status as a client should read it: an active key past `expires_at` is "expired".
    public func effectiveStatus(now: Date) -> String {
        if status == .revoked { return "revoked" }
        if let expires = policy.expiresAt, expires <= now { return "expired" }
        return "active"
    }
}
