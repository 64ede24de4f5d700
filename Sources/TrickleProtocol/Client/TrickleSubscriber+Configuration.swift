public import NIOCore
public import TrickleRelaySupport

extension TrickleSubscriber {
    /// Where a subscriber starts reading (`trickle-protocol.md` §5).
    public enum StartPosition: Sendable, Hashable, CustomStringConvertible {
        /// `-2`: replay the most recent segment from byte 0, then follow (the SDK readers' default).
        case latest
        /// `-1`: wait for the next new segment; never replay.
        case next
        /// An explicit seq, e.g. a position recorded before a restart.
        case seq(Int)

        /// Parses `latest`, `next` or a seq number (0…2^53−1); `nil` for anything else.
        public init?(parsing text: String) {
            switch text {
            case "latest": self = .latest
            case "next": self = .next
            default:
                guard let seq = TrickleSeq.parseHeader(text) else { return nil }
                self = .seq(seq)
            }
        }

        /// `latest`, `next` or the seq number: what ``init(parsing:)`` reads.
        public var description: String {
            switch self {
            case .latest: return "latest"
            case .next: return "next"
            case .seq(let seq): return String(seq)
            }
        }

        var rawSeq: Int {
            switch self {
            case .latest: return -2
            case .next: return -1
            case .seq(let seq): return min(max(seq, 0), TrickleSeq.maximum)  // a library caller's seq is clamped
            }
        }
    }

    /// Configuration of a ``TrickleSubscriber``.
    public struct Configuration: Sendable {
        /// Where to start. Default ``StartPosition/latest``.
        public var start: StartPosition
        /// The largest segment read; past it the rest of the segment is skipped and reported as
        /// ``TrickleSegmentEnd/overLimit(bytes:)``. Default 5 MiB (5,242,880 bytes), the events-channel cap.
        public var maximumSegmentBytes: Int
        /// How long a segment that already started may go without new bytes before the subscriber checks
        /// whether its publisher moved on (nextWrite past it) and, if so, abandons it (§10.5). Must exceed the
        /// publisher's segment window. Default 30 s.
        public var stallTimeout: Duration
        /// Back-off between retries after network errors and 5xx. Default 0.5 s → 5 s.
        public var retryBackoff: Backoff
        /// Consecutive failures after which ``TrickleSubscriber/run(_:)`` throws; `nil` retries forever
        /// (a daemon riding out a server restart). Default `nil`.
        public var maximumConsecutiveFailures: Int?
        /// Pause before retrying a seq the server says is ahead of nextWrite (470 with a smaller
        /// `Lp-Trickle-Latest`). Default 0.25 s, as the SDK.
        public var aheadRetryDelay: Duration
        /// Consecutive "ahead" answers after which the subscriber resyncs to the server's nextWrite (the
        /// channel was recreated or reset behind our back). Default 40 (10 s at the default delay).
        public var maximumAheadRetries: Int
        /// How long a subscriber whose channel does not exist yet (404 before any other answer: it started
        /// before the publisher's first POST) keeps asking before it treats the 404 as end of stream. Once the
        /// channel has answered, a 404 always ends the stream. `nil` (default) does not wait.
        public var channelWaitTimeout: Duration?
        /// While waiting for a channel that does not exist yet, the delay between asks grows from
        /// ``aheadRetryDelay`` to this (doubling, full jitter): a fleet of subscriptions registered before their
        /// runners start costs almost nothing while it waits. ``TrickleSubscriber/expectChannel()`` (the control
        /// API's "expected now") starts again from the short delay. Default 120 s.
        public var channelWaitMaximumDelay: Duration = .seconds(120)
        /// The server's channel announcements (its `_changes` feed), shared by the subscribers of that server: a
        /// subscriber waiting for its channel asks at once when the feed announces it, and — while the feed is
        /// followed — asks on its own only up to ``channelWaitMaximumDelayWhenAnnounced`` apart. `nil`: none.
        public var announcements: ChannelAnnouncements? = nil
        /// Watches the server while it does not answer, so the subscriber asks again the moment it accepts
        /// connections instead of at the end of its back-off; shared by the subscribers of one server (one connect
        /// attempt per interval for all of them). `nil` (default): the subscriber watches its server on its own.
        /// Not used with a ``clock`` of a test's own.
        public var serverReturn: ServerReturnWatch? = nil
        /// While ``announcements`` follows the server's feed, a waiting subscriber's own asks are this far apart
        /// (half-jittered; a backstop only: the feed says when the channel appears), and after being told (an
        /// announcement, ``TrickleSubscriber/expectChannel()``) they grow from ``aheadRetryDelay`` to this.
        /// Default 10 min.
        public var channelWaitMaximumDelayWhenAnnounced: Duration = .seconds(600)
        /// Once asks for a channel that is not there yet are this far apart, the subscription's own connection is
        /// closed (the server would close it idle anyway) and the asks go to `GET …/next` over the shared HTTP
        /// client's kept-alive connections: a waiting fleet holds no socket per channel and opens none per ask.
        /// Default 10 s.
        public var channelWaitAsksSharedAfter: Duration = .seconds(10)
        /// How long a `404` that follows data, without a clean close seen (`Lp-Trickle-Closed`), is taken for a
        /// restarting server rather than the end: the subscriber keeps asking for the same seq (and resumes inside
        /// the segment at the byte it reached) until the channel is back or this passes. `.zero` ends at once,
        /// like the SDK. Default 30 s.
        public var reconnectGrace: Duration
        /// How many segments the server retains (its ring: 5 on both reference servers and on ours). A subscriber
        /// that fell behind (`470` with a larger `Lp-Trickle-Latest`) starts again at the oldest seq the ring can
        /// still hold, `Latest − retainedSegments`, and reports only what lies before it as a gap; a seq evicted
        /// meanwhile answers `470` again and it moves up one. `0` jumps straight to `Latest`, as the SDK does
        /// (losing up to a ring of segments the server still had). Default 5.
        public var retainedSegments: Int
        /// TLS for `https` channels read over the subscriber's own connection: trust and client certificate
        /// (``OutboundTLSContext``, one per process). `nil` (default) uses the system's trust store.
        public var tls: OutboundTLSContext? = nil
        /// Read segments over the subscriber's own keep-alive connection (``SegmentConnection``, cheaper per
        /// event) rather than through the shared HTTP client. Default `true`.
        public var usesOwnConnection: Bool = true
        /// How long the subscriber's own connection may take to connect, and then to finish its TLS handshake
        /// (each). Default 5 s, the HTTP client's connect timeout.
        public var connectTimeout: Duration = .seconds(5)
        /// The subscriber's time: the stall watchdog, the back-off between attempts, the reconnect grace and the
        /// channel wait's deadline read it and sleep on it. `nil` (the default): real time, sleeping on the HTTP
        /// client's event loops. Tests pass a manual clock. (The interval between asks for a channel that does not
        /// exist yet is real time either way: it is also cut short by ``TrickleSubscriber/expectChannel()``.)
        public var clock: RelayClock? = nil

        /// Creates a configuration; every parameter has the documented default.
        public init(
            start: StartPosition = .latest,
            maximumSegmentBytes: Int = 5 * 1024 * 1024,
            stallTimeout: Duration = .seconds(30),
            retryBackoff: Backoff = Backoff(initial: .milliseconds(500), maximum: .seconds(5)),
            maximumConsecutiveFailures: Int? = nil,
            aheadRetryDelay: Duration = .milliseconds(250),
            maximumAheadRetries: Int = 40,
            channelWaitTimeout: Duration? = nil,
            reconnectGrace: Duration = .seconds(30),
            retainedSegments: Int = 5
        ) {
            self.retainedSegments = retainedSegments
            self.start = start
            self.maximumSegmentBytes = maximumSegmentBytes
            self.stallTimeout = stallTimeout
            self.retryBackoff = retryBackoff
            self.maximumConsecutiveFailures = maximumConsecutiveFailures
            self.aheadRetryDelay = aheadRetryDelay
            self.maximumAheadRetries = maximumAheadRetries
            self.channelWaitTimeout = channelWaitTimeout
            self.reconnectGrace = reconnectGrace
        }
    }

    /// Counters of a subscriber, as a value.
    public struct Stats: Sendable, Hashable {
        /// GET requests made.
        public var attempts = 0
        /// GETs repeated after a network error or 5xx.
        public var retries = 0
        /// Segments read to their end (including over-limit and stalled ones).
        public var segments = 0
        /// Body bytes delivered.
        public var bytes = 0
        /// Seqs skipped: not retained any more when asked for (470 behind), or abandoned.
        public var gaps = 0
        /// Resyncs to the server's nextWrite after too many "ahead" answers.
        public var resets = 0
        /// Segments abandoned because their publisher died mid-segment.
        public var stalls = 0
        /// Segments cut at ``Configuration/maximumSegmentBytes``.
        public var overLimitSegments = 0
        /// Replies that broke the protocol (a seq header out of range, a segment we did not ask for); retried.
        public var protocolErrors = 0
        /// Times the channel came back after a `404` or a lost server, within the reconnect grace.
        public var reconnects = 0
        /// Whether the stream ended because the reconnect grace ran out (the channel never came back).
        public var reconnectGraceExpired = false
        /// Why requests do not reach the server now (a certificate problem names its cause); `nil` once one does.
        public var lastConnectionProblem: ConnectionProblem?

        public init() {}
    }

    /// Why a subscription ended.
    public enum EndOfStream: Sendable, Hashable {
        /// The server said `Lp-Trickle-Closed`: the publisher closed the channel.
        case closed
        /// The server answered 404: the channel does not exist (deleted, swept, or never created).
        case notFound
    }
}

/// What a subscriber hands its consumer, in order.
public enum TrickleSubscriberEvent: Sendable {
    /// Segment `seq` started (its first byte, or its empty end, arrived).
    case segmentStarted(seq: Int)
    /// Bytes of segment `seq`, in order.
    case bytes(ByteBuffer, seq: Int)
    /// Segment `seq` ended.
    case segmentEnded(seq: Int, TrickleSegmentEnd)
    /// Seqs `from..<to` will never be read (evicted before we got there, or skipped on resync).
    case gap(from: Int, to: Int)
}

/// How a segment ended for a subscriber.
public enum TrickleSegmentEnd: Sendable, Hashable {
    /// The segment ended normally after this many bytes. A segment cut short by channel close, reset or ring
    /// overwrite also ends this way, so its last line may be truncated (§7).
    case complete(bytes: Int)
    /// The segment grew past the limit; the rest of it was skipped.
    case overLimit(bytes: Int)
    /// The segment's publisher died mid-segment and moved on; the rest was abandoned.
    case stalled(bytes: Int)
}

