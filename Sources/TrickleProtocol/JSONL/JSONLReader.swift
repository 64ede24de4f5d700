public import AsyncHTTPClient
public import Logging
import NIOCore
import Synchronization
import TrickleRelaySupport

/// Reads JSON Lines from a trickle channel, line by line as bytes arrive.
///
/// Unlike the SDK's reader, which ends the whole subscription on the first bad line (`trickle-protocol.md`
/// §8), this one **reports and goes on**: a malformed line, a non-object line, a line or segment over the cap
/// each yield a ``JSONLDiagnostic`` (channel, seq, line number, reason) and reading continues with the next
/// line or segment. It never buffers more than the cap. An unterminated last line is delivered when it is a
/// valid object and reported as truncated when not (§7).
public struct JSONLReader: Sendable {
    /// What the reader hands its consumer, in order.
    public enum Item: Sendable {
        /// A valid JSON object line.
        case line(JSONLLine)
        /// A line or segment that was skipped, and why.
        case diagnostic(JSONLDiagnostic)
        /// Segments `from..<to` were lost (evicted before they were read).
        case gap(from: Int, to: Int)
    }

    /// Configuration of a ``JSONLReader``.
    public struct Configuration: Sendable {
        /// The per-segment cap; also the line cap. Default 5 MiB (5,242,880 bytes).
        public var maximumSegmentBytes: Int
        /// The subscriber's settings (start position, stall timeout, retries). Its segment limit is set to
        /// ``maximumSegmentBytes``.
        public var subscriber: TrickleSubscriber.Configuration
        /// Whether every line is checked to be a strict JSON object (default). A consumer that validates in its
        /// own pass over each line (the client's dispatcher) turns this off and saves a scan per line.
        public var validatesLines: Bool
        /// Called once per segment when it has been read to its end (for a trace span of the read). Default `nil`.
        public var onSegmentRead: (@Sendable (SegmentRead) -> Void)? = nil

        /// Creates a configuration; every parameter has the documented default.
        public init(maximumSegmentBytes: Int = 5 * 1024 * 1024, subscriber: TrickleSubscriber.Configuration = .init(), validatesLines: Bool = true) {
            self.maximumSegmentBytes = maximumSegmentBytes
            self.subscriber = subscriber
            self.validatesLines = validatesLines
        }
    }

    /// One segment read to its end.
    public struct SegmentRead: Sendable {
        public var seq: Int
        /// Body bytes read.
        public var bytes: Int
        /// When its first byte was asked for (the GET), in Unix nanoseconds; it ended now.
        public var startedAtNanos: UInt64
        /// Whether it ended cleanly (not cut at the cap, abandoned or failed).
        public var complete: Bool
    }

    /// The subscriber underneath (for its stats).
    public let subscriber: TrickleSubscriber
    private let maximumSegmentBytes: Int
    private let validatesLines: Bool
    private let onSegmentRead: (@Sendable (SegmentRead) -> Void)?

    /// Creates a reader for the channel at `url`.
    public init(url: TrickleChannelURL, httpClient: HTTPClient, configuration: Configuration = .init(), logger: Logger) {
        var subscriberConfiguration = configuration.subscriber
        subscriberConfiguration.maximumSegmentBytes = configuration.maximumSegmentBytes
        self.subscriber = TrickleSubscriber(
            url: url,
            httpClient: httpClient,
            configuration: subscriberConfiguration,
            logger: logger
        )
        self.maximumSegmentBytes = configuration.maximumSegmentBytes
        self.validatesLines = configuration.validatesLines
        self.onSegmentRead = configuration.onSegmentRead
    }

    /// Reads until end of stream, handing every item to `handle` in order.
    ///
    /// - Returns: Why the stream ended.
    nonisolated(nonsending) public func run(
        _ handle: nonisolated(nonsending) @escaping @Sendable (Item) async throws -> Void
    ) async throws -> TrickleSubscriber.EndOfStream {
        try await self.runBatches { items in
            for item in items { try await handle(item) }
        }
    }

    /// Reads until end of stream, handing the items of each chunk that arrives to `handle` at once, in order
    /// (one call per network read rather than per line: what a consumer keeping up with a busy channel wants).
    ///
    /// - Returns: Why the stream ended.
    /// It runs where its caller runs (`nonisolated(nonsending)`), and so does `handle`.
    nonisolated(nonsending) public func runBatches(
        _ handle: nonisolated(nonsending) @escaping @Sendable ([Item]) async throws -> Void
    ) async throws -> TrickleSubscriber.EndOfStream {
        let parser = RelayMutex(
            JSONLSegmentParser(
                source: self.subscriber.url.channelName,
                seq: -1,
                maximumSegmentBytes: self.maximumSegmentBytes,
                validatesObjects: self.validatesLines
            )
        )
        let onSegmentRead = self.onSegmentRead
        let current = RelayMutex<SegmentRead?>(nil)  // the segment being read, for `onSegmentRead`
        return try await self.subscriber.run { event in
            var items: [JSONLSegmentParser.Item] = []
            switch event {
            case .segmentStarted(let seq):
                parser.withLock { $0.startSegment(seq: seq) }
                if onSegmentRead != nil {
                    current.withLock { $0 = SegmentRead(seq: seq, bytes: 0, startedAtNanos: WallClock.unixNanoseconds(), complete: false) }
                }
            case .bytes(let chunk, _):
                parser.withLock { $0.feed(chunk, into: &items) }
                if onSegmentRead != nil { current.withLock { $0?.bytes += chunk.readableBytes } }
            case .segmentEnded(_, let end):
                if let onSegmentRead, var read = current.withLock({ state in defer { state = nil }; return state }) {
                    if case .complete = end { read.complete = true }
                    onSegmentRead(read)
                }
                parser.withLock { parser in
                    if case .overLimit(let bytes) = end {
                        parser.noteSegmentOverLimit(bytes: bytes, into: &items)
                    }
                    parser.finishSegment(into: &items)
                }
            case .gap(let from, let to):
                try await handle([.gap(from: from, to: to)])
            }
            guard !items.isEmpty else { return }
            try await handle(
                items.map { item in
                    switch item {
                    case .line(let line): return .line(line)
                    case .diagnostic(let diagnostic): return .diagnostic(diagnostic)
                    }
                }
            )
        }
    }
}
