public import AsyncHTTPClient
public import ClientEgress
public import Logging
public import NIOCore
public import RunnerRelay
public import ServiceLifecycle
import Synchronization
public import TrickleProtocol
import TrickleRelaySupport

/// The demo: a runner relay and a client daemon against one trickle server in this process. The runner side
/// feeds a recorded session (or synthetic heartbeats) at a rate; the client side counts deliveries and latency.
/// A status line goes to `report` every second.
public final class DemoDriver: Service, CustomStringConvertible {
    public let server: TrickleServer
    public let sink: LatencySink
    public let stream: TelemetryStream?
    public let duration: Double
    public let rate: Int
    public let fixture: [ByteBuffer]?
    private let logger: Logger
    private let client: HTTPClient
    private let report: @Sendable (String) -> Void
    private let result = RelayMutex<(SessionRelay.Summary, EventDispatcher.Counters)?>(nil)
    private let daemon = RelayMutex<ClientDaemon?>(nil)

    /// Creates the demo.
    /// - Parameters:
    ///   - sink: Where the client's telemetry goes (and is measured).
    ///   - stream: When given, the client also publishes everything on this SSE stream.
    ///   - duration: Seconds to feed.
    ///   - rate: Lines (or synthetic events) per second.
    ///   - fixture: A recorded session's lines, fed in a loop; `nil` feeds synthetic heartbeats.
    ///   - report: Receives a status line every second.
    public init(
        server: TrickleServer,
        client: HTTPClient,
        sink: LatencySink,
        stream: TelemetryStream?,
        duration: Double,
        rate: Int,
        fixture: [ByteBuffer]?,
        logger: Logger,
        report: @escaping @Sendable (String) -> Void
    ) {
        self.server = server
        self.client = client
        self.sink = sink
        self.stream = stream
        self.duration = duration
        self.rate = rate
        self.fixture = fixture
        self.logger = logger
        self.report = report
    }

    /// What the runner relayed and what the client saw; `nil` until ``run()`` finished.
    public var outcome: (relay: SessionRelay.Summary, client: EventDispatcher.Counters)? {
        self.result.withLock { $0.map { (relay: $0.0, client: $0.1) } }
    }

    /// One status line: relayed, dropped, delivered, latency.
    public static func status(_ stats: TrickleEventsSink.Stats, _ delivered: LatencySink.Snapshot) -> String {
        "relayed \(stats.relayed)  dropped \(stats.dropped)  delivered \(delivered.delivered)  latency p50 \(delivered.p50) ms  p99 \(delivered.p99) ms"
    }

    /// The client's metrics, for the demo's `GET /metrics`.
    public func metricsText() -> String {
        guard let daemon = self.daemon.withLock({ $0 }) else { return "" }
        return ClientMetrics(daemon: daemon, spooledSink: nil, reporter: nil, stream: self.stream).render()
    }

    public var description: String { "DemoDriver" }

    /// How long the relay and the client get to flush after SIGTERM/SIGINT before they are cancelled.
    public static let shutdownDeadline = Duration.milliseconds(1500)

    public func run() async throws {
        let client = self.client
        let port = try await self.server.waitUntilListening()
        self.server.createChannel(named: "demo-events")
        let url = try TrickleChannelURL("http://127.0.0.1:\(port)/demo-events")
        self.report("trickle server on http://127.0.0.1:\(port)/  channel demo-events")
        let relay = SessionRelay(
            configuration: .init(
                eventsURL: url,
                sink: .init(identity: .init(sessionID: "demo-session", connectionID: "demo-connection")),
                writer: .init(segmentWindow: .seconds(1))
            ),
            httpClient: client,
            logger: self.logger
        )
        let sink: any EgressSink = self.stream.map { FanOutSink([self.sink, $0]) } ?? self.sink
        let stream = self.stream
        let daemon = ClientDaemon(eventsURL: url, httpClient: client, reader: .init(subscriber: .init(start: .seq(0))), sink: sink, logger: self.logger) {
            stream?.publish($0)
        }
        self.daemon.withLock { $0 = daemon }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await daemon.run() }
            group.addTask { try await relay.run() }
            if self.fixture == nil {  // a recorded session brings its own runner_ready
                await relay.sink.sendControl(ByteBuffer(string: #"{"type":"runner_ready","runner_job_id":"demo"}"#))
            }
            let start = ContinuousClock.now
            var emitted = 0
            var nextStatus = start + .seconds(1)
            // SIGTERM/SIGINT (the group's graceful shutdown) ends feeding at once; the relay then flushes.
            while ContinuousClock.now - start < .milliseconds(Int64(self.duration * 1000)), !Task.isShuttingDownGracefully {
                let elapsed = ContinuousClock.now - start
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                // At most one second's worth per pass: a machine that fell behind catches up, never spins.
                let due = min(Int(Double(self.rate) * seconds), emitted + self.rate)
                while emitted < due, !Task.isShuttingDownGracefully {
                    if let fixture = self.fixture {
                        switch RunnerLine(fixture[emitted % fixture.count]) {
                        case .telemetry(let event): relay.sink.emit(event)
                        case .control(let control): await relay.sink.sendControl(control)
                        case .invalid: break  // a malformed fixture line: the runner would report and skip it too
                        }
                    } else {
                        relay.sink.emit(#"{"type":"stream_heartbeat","mode":"demo","n":\#(emitted),"fps_in":30.0,"fps_out":29.9}"#)
                    }
                    emitted += 1
                }
                if ContinuousClock.now >= nextStatus {
                    nextStatus = nextStatus + .seconds(1)
                    self.report(Self.status(relay.sink.stats, self.sink.snapshot))
                }
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(10)) }
            }
            // The relay flushes and deletes the channel; the client then sees the end of stream. After a signal,
            // both get `shutdownDeadline` to do so before they are cancelled (the process must end promptly).
            relay.finish()
            if Task.isShuttingDownGracefully {
                group.addTask {
                    try await Task.sleep(for: Self.shutdownDeadline)
                    throw ShutdownDeadlinePassed()
                }
                do {
                    var finished = 0
                    while finished < 2, try await group.next() != nil { finished += 1 }
                } catch is ShutdownDeadlinePassed {
                    self.logger.warning("demo did not drain within the shutdown deadline; stopping")
                }
                group.cancelAll()
            } else {
                try await group.waitForAll()
            }
        }
        self.result.withLock { $0 = (relay.summary, daemon.stats) }
    }
}

/// The demo's relay and client did not finish within ``DemoDriver/shutdownDeadline`` after a signal.
private struct ShutdownDeadlinePassed: Error {}
