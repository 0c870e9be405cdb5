import Metrics

/// Prometheus-facing instruments of the data plane (exported by /metrics when the server bootstraps swift-prometheus).
enum ProxyMetrics {
    static func request(vendor: String, decision: String, code: String?) {
        Counter(label: "keybrake_proxy_requests_total",
                dimensions: [("vendor", vendor), ("decision", decision), ("code", code ?? "none")]).increment()
    }

    static func upstreamLatency(vendor: String, nanoseconds: Int64) {
        Timer(label: "keybrake_upstream_duration_seconds", dimensions: [("vendor", vendor)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(nanoseconds)
    }

    static func overhead(vendor: String, nanoseconds: Int64) {
        Timer(label: "keybrake_proxy_overhead_seconds", dimensions: [("vendor", vendor)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(nanoseconds)
    }

    static func reservationsHeld(delta: Int) {
        Meter(label: "keybrake_reservations_held").increment(by: Double(delta))
    }
}
