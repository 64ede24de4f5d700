import CoreMetrics
import Foundation
import Prometheus
import RelayTracing
import Tracing
import TrickleProtocol
import TrickleRelaySupport

/// Metrics and tracing on or off for a run, from the environment: `TRICKLE_RELAY_BENCH_METRICS=1` bootstraps
/// swift-prometheus as `trickle-relay` does (the relay's histograms then record into it);
/// `TRICKLE_RELAY_BENCH_TRACING=1` gives the runner relay of the latency benchmarks the relay's own tracer,
/// exporting to a loopback endpoint (its segment spans are built, batched and POSTed; the endpoint's answer is
/// not the point).
enum ObservabilityModes {
    static let metrics = ProcessInfo.processInfo.environment["TRICKLE_RELAY_BENCH_METRICS"] == "1"
    static let tracing = ProcessInfo.processInfo.environment["TRICKLE_RELAY_BENCH_TRACING"] == "1"

    static func bootstrapMetrics() {
        guard Self.metrics else { return }
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))
    }

    /// The relay tracer for a process whose OTLP endpoint is `port` on loopback, or `nil` when tracing is off.
    static func tracer(exportingTo port: Int) throws -> RelayTracing? {
        guard Self.tracing else { return nil }
        let configuration = RelayTracingConfiguration(
            endpoint: try OTLPEndpoint(parsing: "http://127.0.0.1:\(port)/v1/traces", signalPath: "/v1/traces", what: "bench"),
            serviceName: "trickle-relay-bench",
            exportInterval: .milliseconds(500)
        )
        return try RelayTracing(configuration: configuration, logger: logger)
    }

    static var description: String { "metrics \(Self.metrics ? "on" : "off"), tracing \(Self.tracing ? "on" : "off")" }
}
