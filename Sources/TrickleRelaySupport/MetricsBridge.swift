public import CoreMetrics
import Synchronization

/// Records a process's counters and gauges through swift-metrics.
///
/// The relay keeps its counters as plain integers under the locks it already takes (an `emit` is one lock and
/// an append; an atomic metric per event would cost more than the event), and takes a snapshot of them as a
/// ``PrometheusText``. The bridge turns each snapshot into swift-metrics calls — a counter is incremented by
/// what it grew since the last snapshot, a gauge records its value — on metric objects created once per name and
/// label set (every label set the relay uses is bounded: states, error names; never a session). So whatever
/// factory the application bootstrapped (swift-prometheus in `trickle-relay`'s processes, or an embedding
/// application's own backend) sees the relay's numbers under their documented names.
public final class MetricsBridge: Sendable {
    private enum Metric {
        case counter(Counter, last: Int)
        case gauge(Gauge)
    }

    private let factory: any MetricsFactory
    private let metrics = RelayMutex<[String: Metric]>([:])

    /// - Parameter factory: Where the metrics go; the process-global factory by default (which the executable,
    ///   never the library, bootstraps).
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
    }

    /// Records one snapshot.
    public func record(_ snapshot: PrometheusText) {
        self.metrics.withLock { metrics in
            for sample in snapshot.samples {
                let key = sample.key
                switch (sample.type, metrics[key]) {
                case (.counter, .counter(let counter, let last)?):
                    if sample.value >= last {
                        counter.increment(by: sample.value - last)
                    } else {
                        // The source went down (a subscription's counters left the totals): start again from it.
                        counter.reset()
                        counter.increment(by: sample.value)
                    }
                    metrics[key] = .counter(counter, last: sample.value)
                case (.counter, _):
                    let counter = Counter(label: sample.name, dimensions: sample.labels, factory: self.factory)
                    counter.increment(by: max(sample.value, 0))
                    metrics[key] = .counter(counter, last: sample.value)
                case (.gauge, .gauge(let gauge)?):
                    gauge.record(sample.value)
                case (.gauge, _):
                    let gauge = Gauge(label: sample.name, dimensions: sample.labels, factory: self.factory)
                    gauge.record(sample.value)
                    metrics[key] = .gauge(gauge)
                }
            }
        }
    }
}

/// How a process answers `GET /metrics` when it exposes its metrics through swift-metrics: each scrape records
/// the current snapshot through the bridge, then renders the executable's registry (swift-prometheus), which
/// also holds the latency histograms the relay records directly.
public struct MetricsExposition: Sendable {
    public let bridge: MetricsBridge
    /// Renders the registry in the Prometheus text format.
    public let render: @Sendable () -> String

    public init(bridge: MetricsBridge, render: @escaping @Sendable () -> String) {
        self.bridge = bridge
        self.render = render
    }

    /// The `/metrics` body for `snapshot`: through the registry when there is an exposition, else the snapshot's
    /// own text.
    public static func body(for snapshot: PrometheusText, exposition: MetricsExposition?) -> String {
        guard let exposition else { return snapshot.text }
        exposition.bridge.record(snapshot)
        return exposition.render()
    }
}
