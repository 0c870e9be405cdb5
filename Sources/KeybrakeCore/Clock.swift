import Foundation

/// Source of "now", injectable so tests can move time (expiry, day boundaries).
public protocol Clock: Sendable {
    func now() -> Date
}

public struct SystemClock: Clock {
    public init() {}
    public func now() -> Date { Date() }
}
