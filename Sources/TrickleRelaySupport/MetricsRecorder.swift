public import CoreMetrics
public import ServiceLifecycle

/// How often, and into which factory, a process's counters are recorded through swift-metrics when nobody
/// scrapes `/metrics` — so that an application embedding the relay's libraries sees them in its own backend.
public struct MetricsRecording: Sendable {
    /// Time between two recordings. Default 10 s.
    public var interval: Duration
    /// Where the metrics go; `nil` (the default) means the process-global factory as it is when the recorder
    /// starts — the one the application bootstrapped (libraries never bootstrap one).
    public var factory: (any MetricsFactory)?

    public init(interval: Duration = .seconds(10), factory: (any MetricsFactory)? = nil) {
        self.interval = interval
        self.factory = factory
    }
}

/// Records a snapshot of the relay's counters through a ``MetricsBridge`` every interval, and once more when it
/// stops (graceful shutdown or cancellation), so the last numbers of a run are not lost.
///
/// A process that also answers `/metrics` through the bridge passes that bridge in: counters are recorded as
/// increments since the bridge's last snapshot, and two bridges over the same counters would count twice.
public struct MetricsRecorder: Service, CustomStringConvertible {
    private let recording: MetricsRecording
    private let bridge: MetricsBridge?
    private let snapshot: @Sendable () -> PrometheusText

    /// - Parameters:
    ///   - recording: The interval and the factory.
    ///   - bridge: The bridge `/metrics` already records through, if any; else one is made on the recording's
    ///     factory when ``run()`` starts.
    ///   - snapshot: The counters now.
    public init(_ recording: MetricsRecording, bridge: MetricsBridge? = nil, snapshot: @escaping @Sendable () -> PrometheusText) {
        self.recording = recording
        self.bridge = bridge
        self.snapshot = snapshot
    }

    public var description: String { "MetricsRecorder" }

    public func run() async throws {
        let bridge = self.bridge ?? MetricsBridge(factory: self.recording.factory ?? MetricsSystem.factory)
        // A zero or negative interval would spin: at least 10 ms between recordings.
        let interval = max(self.recording.interval, .milliseconds(10))
        bridge.record(self.snapshot())
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                break
            }
            bridge.record(self.snapshot())
        }
        bridge.record(self.snapshot())
    }
}
