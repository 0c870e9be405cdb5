import Metrics
import NIOConcurrencyHelpers

/// Prometheus-facing instruments of the data plane (exported by /metrics when the server bootstraps swift-prometheus).
/// Handles are created once per label set and reused: creating one goes through the metrics factory's registry.
enum ProxyMetrics {
    static let counters = NIOLockedValueBox([String: Counter]())
    static let timers = NIOLockedValueBox([String: Timer]())
    static let held = Meter(label: "keybrake_reservations_held")

    static func request(vendor: String, decision: String, code: String?) {
        let code = code ?? "none"
        let key = vendor + "|" + decision + "|" + code
        let counter = counters.withLockedValue { cache in
            if let c = cache[key] { return c }
            let c = Counter(label: "keybrake_proxy_requests_total", dimensions: [("vendor", vendor), ("decision", decision), ("code", code)])
            cache[key] = c
            return c
        }
        counter.increment()
    }

    static func timer(_ label: String, vendor: String) -> Timer {
        let key = label + "|" + vendor
        return timers.withLockedValue { cache in
            if let t = cache[key] { return t }
            let t = Timer(label: label, dimensions: [("vendor", vendor)], preferredDisplayUnit: .seconds)
            cache[key] = t
            return t
        }
    }

    static func upstreamLatency(vendor: String, nanoseconds: Int64) {
        timer("keybrake_upstream_duration_seconds", vendor: vendor).recordNanoseconds(nanoseconds)
    }

    static func overhead(vendor: String, nanoseconds: Int64) {
        timer("keybrake_proxy_overhead_seconds", vendor: vendor).recordNanoseconds(nanoseconds)
    }

    static func reservationsHeld(delta: Int) {
        held.increment(by: Double(delta))
    }
}
