import CoreMetrics
import Prometheus
import TrickleProtocol
import TrickleRelaySupport

/// The process's metrics backend: swift-metrics bootstrapped once, by the executable (never by a library), with
/// a swift-prometheus factory; `GET /metrics` renders its registry.
enum ProcessMetrics {
    /// Latency histogram buckets: the relay's paths take tens of microseconds to seconds (a backlog).
    static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]

    /// Bootstraps swift-metrics for this process and returns how `/metrics` is answered.
    static func bootstrap() -> MetricsExposition {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.durationBuckets
        MetricsSystem.bootstrap(factory)
        return MetricsExposition(bridge: MetricsBridge(), render: { registry.emitToString() })
    }
}
