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
    public var policy: Policy
    public let createdAt: Date
    public var updatedAt: Date
    public var revokedAt: Date?

    /// Status as a client should read it: an active key past `expires_at` is "expired".
    public func effectiveStatus(now: Date) -> String {
        if status == .revoked { return "revoked" }
        if let expires = policy.expiresAt, expires <= now { return "expired" }
        return "active"
    }
}
