public import TrickleProtocol
public import TrickleRelaySupport

extension RunnerAgent {
    /// Configuration of the multi-session runner agent.
    public struct Configuration: Sendable {
        /// Address of the loopback ingest API. Default `127.0.0.1`.
        public var host: String
        /// Port of the ingest API (`0` picks one). Default 7070.
        public var port: Int
        /// Required on every request but `/healthz` when set; mandatory when `host` is not loopback.
        public var token: BearerToken?
        /// Consent, scrubbing, bounds and client source for every session (identity comes per session).
        public var sinkDefaults: TrickleEventsSink.Configuration
        /// Segment window and cap of every session's writer.
        public var writer: JSONLWriter.Configuration
        /// How long a session's teardown may flush. Default 5 s.
        public var flushTimeout: Duration
        /// How `GET /metrics` is answered: through swift-metrics and the executable's registry, or (`nil`, the
        /// default) as the agent's own Prometheus text.
        public var metricsExposition: MetricsExposition? = nil
        /// Records the agent's counters through swift-metrics every interval even when nobody scrapes `/metrics`
        /// (an application embedding the agent sees them in the backend it bootstrapped). Default every 10 s into
        /// the global factory; `nil` turns it off.
        public var metricsRecording: MetricsRecording? = MetricsRecording()
        /// Interval of `relay_heartbeat`. Default 30 s.
        public var heartbeatInterval: Duration
        /// Largest request body accepted (413 beyond). Default 5 MiB.
        public var maximumBodyBytes: Int
        /// A connection that completes no request part for this long is closed: idle keep-alive connections,
        /// and clients that send their headers byte by byte. Default 30 s.
        public var connectionIdleTimeout: Duration
        /// Sessions at once; more are answered `503` + `Retry-After` (each holds a queue and two connections to
        /// its trickle server). Default 1,000.
        public var maximumSessions: Int

        public init(
            host: String = "127.0.0.1",
            port: Int = 7070,
            token: BearerToken? = nil,
            sinkDefaults: TrickleEventsSink.Configuration = .init(identity: .init(sessionID: "")),
            writer: JSONLWriter.Configuration = .init(),
            flushTimeout: Duration = .seconds(5),
            heartbeatInterval: Duration = .seconds(30),
            maximumBodyBytes: Int = 5 * 1024 * 1024,
            connectionIdleTimeout: Duration = .seconds(30),
            maximumSessions: Int = 1_000
        ) {
            self.maximumSessions = maximumSessions
            self.host = host
            self.port = port
            self.token = token
            self.sinkDefaults = sinkDefaults
            self.writer = writer
            self.flushTimeout = flushTimeout
            self.heartbeatInterval = heartbeatInterval
            self.maximumBodyBytes = maximumBodyBytes
            self.connectionIdleTimeout = connectionIdleTimeout
        }

        /// Whether `host` only accepts connections from this machine.
        public var isLoopback: Bool { ListenAddress.isLoopback(self.host) }
    }

    /// Why the agent refuses to start.
    public struct StartupError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }
}
