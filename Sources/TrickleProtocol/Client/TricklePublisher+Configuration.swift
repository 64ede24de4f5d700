public import TrickleRelaySupport
extension TricklePublisher {
    /// Where a publisher starts writing.
    public enum StartPosition: Sendable, Hashable {
        /// At the live edge: resolve nextWrite with `GET {channel}/next` and send the first POST with
        /// `Lp-Trickle-Reset`, which frees readers stuck on a dead publisher's segment (§3, §7). Like the SDK.
        case next
        /// At an explicit seq (no reset).
        case seq(Int)
    }

    /// Configuration of a ``TricklePublisher``.
    public struct Configuration: Sendable {
        /// Where to start. Default ``StartPosition/next``.
        public var start: StartPosition
        /// The `Content-Type` of segment POSTs (it sets the channel MIME if the POST auto-creates the channel).
        /// Default `application/octet-stream`.
        public var mimeType: String
        /// Bytes that may wait to be sent before `write` suspends (back-pressure). Default 1 MiB.
        public var maximumBufferedBytes: Int
        /// Back-off between retries of a POST that failed before sending any body byte. Default 0.25 s → 5 s.
        public var retryBackoff: Backoff
        /// Consecutive failed attempts after which the publisher gives up (terminal); `nil`, the default, never
        /// gives up: a trickle server outage of any length is ridden out with the capped back-off, while the
        /// writer's back-pressure and the caller's own bounds decide what waits (a runner's queue drops the oldest,
        /// counted). Only the server saying the session is over (404, `Lp-Trickle-Closed`) ends publishing.
        public var maximumConsecutiveFailures: Int?
        /// Whether ``TricklePublisher/close()`` deletes the channel so that readers see end of stream, like the
        /// SDK's writer. Default `true`.
        public var deletesChannelOnClose: Bool
        /// How long ``TricklePublisher/close()`` waits, after the last segment is on the server, before deleting
        /// the channel. go-livepeer forgets a deleted channel at once, so a reader still fetching the last
        /// segment would get 404 and lose its tail; a short linger lets it finish. Default zero.
        public var lingerBeforeDelete: Duration
        /// A segment up to this size is kept whole until the server acknowledged it, so that an upload broken
        /// part-way (the server restarted, the connection dropped, a 5xx) is sent again from its first byte under
        /// the same seq instead of being lost. Larger segments fail for good on such a break. Default 8 MiB
        /// (events segments are at most 5 MiB).
        public var maximumResendBytes: Int
        /// Whether a `404` for a segment (the channel is gone: a restarted server, a sweep) makes the publisher
        /// create the channel again (`POST {channel}`) and re-send, where the server allows it. A server that
        /// answers `404` to the create too (an orchestrator) ends the session: that is terminal. Default `true`.
        public var recreatesChannel: Bool
        /// The publisher's time: segment ages (the writer's window), back-off between attempts, the linger before
        /// the delete, and its failure log's interval. Default real time; tests pass a manual clock.
        public var clock: RelayClock = .continuous

        /// Creates a configuration; every parameter has the documented default.
        public init(
            start: StartPosition = .next,
            mimeType: String = "application/octet-stream",
            maximumBufferedBytes: Int = 1024 * 1024,
            retryBackoff: Backoff = Backoff(initial: .milliseconds(250), maximum: .seconds(5)),
            maximumConsecutiveFailures: Int? = nil,
            deletesChannelOnClose: Bool = true,
            lingerBeforeDelete: Duration = .zero,
            maximumResendBytes: Int = 8 * 1024 * 1024,
            recreatesChannel: Bool = true
        ) {
            self.start = start
            self.mimeType = mimeType
            self.maximumBufferedBytes = maximumBufferedBytes
            self.retryBackoff = retryBackoff
            self.maximumConsecutiveFailures = maximumConsecutiveFailures
            self.deletesChannelOnClose = deletesChannelOnClose
            self.lingerBeforeDelete = lingerBeforeDelete
            self.maximumResendBytes = maximumResendBytes
            self.recreatesChannel = recreatesChannel
        }
    }

    /// Counters of a publisher, as a value.
    public struct Stats: Sendable, Hashable {
        /// POST requests made (first tries and retries).
        public var attempts = 0
        /// POST requests repeated after a network error or 5xx.
        public var retries = 0
        /// Segments completed (the server answered 200 after the whole body).
        public var segments = 0
        /// Body bytes of completed segments.
        public var bytes = 0
        /// Segments whose upload failed part-way (their bytes may be partly lost).
        public var failedSegments = 0
        /// First POSTs sent with `Lp-Trickle-Reset`.
        public var resets = 0
        /// Replies that broke the protocol (a nextWrite or seq out of range).
        public var protocolErrors = 0
        /// Segments sent again from their first byte after an upload broke part-way.
        public var resends = 0
        /// Times the channel was created again after a `404` (a restarted server).
        public var channelRecreations = 0
        /// Why POSTs do not reach the server now (a certificate problem names its cause); `nil` once a segment
        /// is accepted again.
        public var lastConnectionProblem: ConnectionProblem?

        public init() {}
    }
}
