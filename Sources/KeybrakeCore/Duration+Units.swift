/// A `Duration` as a count of one unit: the conversions every timer, log line and deadline needs, written once.
/// Whole units are truncated toward zero, as `components.attoseconds / …` was at every call site.
extension Duration {
    /// Whole milliseconds.
    @inlinable public var milliseconds: Int64 { components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000 }

    /// Whole microseconds (log fields such as `duration_us`, audit timings).
    @inlinable public var microseconds: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }

    /// Whole nanoseconds (NIO's `TimeAmount`, deadlines).
    @inlinable public var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }

    /// Seconds as a `Double` (Foundation's `TimeInterval`).
    @inlinable public var timeInterval: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
