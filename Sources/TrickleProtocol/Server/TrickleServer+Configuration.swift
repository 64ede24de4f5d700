public import TrickleRelaySupport
extension TrickleServer {
    /// Configuration of an embedded trickle server. Defaults match a local `trickle-relay serve`.
    public struct Configuration: Sendable {
        /// The address to bind. Default `127.0.0.1` (loopback only).
        public var host: String
        /// The port to bind; `0` picks a free port (see ``TrickleServer/waitUntilListening()``). Default 2939.
        public var port: Int
        /// The path prefix of every channel, like `/ai/trickle/` on an orchestrator. Default `/`.
        public var basePath: String
        /// Whether a POST to an unknown channel creates it (the http-trickle sample server does; orchestrators
        /// do not). Default `true`, for local use.
        public var autocreate: Bool
        /// The largest segment a publisher may POST. The reference servers hold segments in memory without a
        /// limit; ours answers `413` and ends the segment past this many bytes. Default 64 MiB.
        public var maximumSegmentBytes: Int
        /// Retained segments per channel (`trickle-protocol.md` §6). Default 5.
        public var ringSize: Int
        /// How often a POST still waiting for its first byte gets an interim `100 Continue`. Default 10 s.
        public var interimResponseInterval: Duration
        /// How often idle channels are swept. Default 1 min.
        public var idleSweepInterval: Duration
        /// A channel whose last segment started longer ago than this is deleted by the sweep. Default 5 min.
        public var idleChannelTimeout: Duration
        /// How long the retained segments of a deleted channel stay readable (GET only), so that readers a
        /// segment behind the publisher's final DELETE still get the tail. Default 10 s; `.zero` forgets at
        /// once, like go-livepeer.
        public var deletedChannelGracePeriod: Duration
        /// How long a segment whose POST broke part-way stays open for a re-send of the same seq to continue
        /// it, when no later segment starts first. Default 30 s.
        public var interruptedSegmentTimeout: Duration
        /// Live channels at most; creating one more answers `503` with `Retry-After`. Default 10,000.
        public var maximumChannels: Int
        /// Segment bytes held in memory at most, across every channel; a body that would pass it answers `503`
        /// with `Retry-After` and ends its segment. Default 1 GiB.
        public var maximumRetainedBytes: Int
        /// When set, publishing (segment and channel `POST`), deleting and `/metrics` require
        /// `Authorization: Bearer <token>` (scheme case-insensitive) or the token as a `token=` or `jwt=` query
        /// parameter of the URL. Default `nil` (open: a loopback server for local use).
        public var token: BearerToken?
        /// Whether reads (`GET` of segments and `/next`) require the token too. Default `false`.
        public var tokenRequiredForReads: Bool
        /// How `GET /metrics` is answered: through swift-metrics and the executable's registry, or (`nil`, the
        /// default) as the server's own Prometheus text.
        public var metricsExposition: MetricsExposition? = nil
        /// Records the server's counters through swift-metrics every interval even when nobody scrapes
        /// `/metrics` (an application embedding the server sees them in the backend it bootstrapped). Default
        /// every 10 s into the global factory; `nil` turns it off.
        public var metricsRecording: MetricsRecording? = MetricsRecording()
        /// A connection that does not complete a request head within this long — idle between requests, or one
        /// sending its head byte by byte — is closed. A request once its head is in (a preconnected POST waiting
        /// for its first byte, a GET waiting at the live edge) is never cut. Default 90 s (longer than HTTP
        /// clients keep idle pooled connections: AsyncHTTPClient's 60 s).
        public var requestHeadTimeout: Duration = .seconds(90)
        /// TLS for every connection (`serve --tls-cert --tls-key`); `nil` (the default) serves plain HTTP.
        public var tls: ServerTLS? = nil
        /// Whether the server announces every channel created and removed on its `_changes` channel
        /// (`{"added":[…]}` / `{"removed":[…]}` lines, as http-trickle's sample server does), so that a client
        /// waiting for channels follows one channel instead of asking for each. Default `true`.
        public var announcesChannels: Bool = true

        /// Creates a configuration; every parameter has the documented default.
        public init(
            host: String = "127.0.0.1",
            port: Int = 2939,
            basePath: String = "/",
            autocreate: Bool = true,
            maximumSegmentBytes: Int = 64 * 1024 * 1024,
            ringSize: Int = 5,
            interimResponseInterval: Duration = .seconds(10),
            idleSweepInterval: Duration = .seconds(60),
            idleChannelTimeout: Duration = .seconds(300),
            deletedChannelGracePeriod: Duration = .seconds(10),
            maximumChannels: Int = 10_000,
            maximumRetainedBytes: Int = 1024 * 1024 * 1024,
            token: BearerToken? = nil,
            tokenRequiredForReads: Bool = false,
            interruptedSegmentTimeout: Duration = .seconds(30)
        ) {
            self.host = host
            self.port = port
            self.basePath = basePath
            self.autocreate = autocreate
            self.maximumSegmentBytes = maximumSegmentBytes
            self.ringSize = ringSize
            self.interimResponseInterval = interimResponseInterval
            self.idleSweepInterval = idleSweepInterval
            self.idleChannelTimeout = idleChannelTimeout
            self.deletedChannelGracePeriod = deletedChannelGracePeriod
            self.maximumChannels = maximumChannels
            self.maximumRetainedBytes = maximumRetainedBytes
            self.token = token
            self.tokenRequiredForReads = tokenRequiredForReads
            self.interruptedSegmentTimeout = interruptedSegmentTimeout
        }

        /// `basePath` with exactly one leading and one trailing slash.
        var normalizedBasePath: String {
            let trimmed = self.basePath.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
            return trimmed.isEmpty ? "/" : "/\(trimmed)/"
        }
    }
}
