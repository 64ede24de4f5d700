import Hummingbird
public import Logging
import NIOCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Synchronization
public import ServiceLifecycle
import TrickleProtocol
public import TrickleRelaySupport

/// The client daemon's local HTTP endpoint:
///
/// | route | what |
/// | --- | --- |
/// | `GET /telemetry/stream` | `text/event-stream`: every relayed envelope as `id: <n>`, `event: telemetry`, `data: <envelope>`, and every other event of the channel as `event: <its type>`, `data: <its line>`; `Last-Event-ID` resumes from the ring; a `: keep-alive` comment every 15 s |
/// | `GET /` | the live page (``ClientLivePage``: HTML, `/ui/page.js`, `/ui/page.css`; no data, never needs the token) |
/// | `GET /healthz` | liveness, never needs the token |
/// | `GET /metrics` | Prometheus text |
/// | `/v1/subscriptions` | the daemon's control API (``SubscriptionRoutes``) |
/// | `GET /v1/egress` | the sink's kind and its failure states while they hold, in words (``ClientMetrics/egressStatus()``) |
///
/// With a token, every route but `/healthz` needs `Authorization: Bearer <token>` or `?jwt=<token>` (browsers'
/// `EventSource` cannot set headers). The token never reaches a log line: connections are logged by path
/// only, with how they authenticated.
public final class TelemetryStreamServer: Service, Sendable {
    /// Configuration of a ``TelemetryStreamServer``.
    public struct Configuration: Sendable {
        /// Listen address. Default `127.0.0.1` (loopback only).
        public var host: String
        /// Listen port; `0` picks a free one. Default 7071.
        public var port: Int
        /// The token readers must present; `nil` leaves the routes open (allowed on loopback only by the CLI).
        public var token: BearerToken?
        /// A comment is sent this often on an idle stream, so proxies and browsers keep it open. Default 15 s.
        public var keepAliveInterval: Duration
        /// When the address cannot be bound (a second client on the default port), log a warning and run
        /// without the endpoint instead of failing. Default `false`.
        public var isOptional: Bool
        /// SSE readers served at once; more are answered `503` + `Retry-After` (counted). Default 256.
        public var maximumReaders: Int
        /// A reader whose write has not gone out after this long (it stopped reading) is dropped, counted and
        /// logged: it never holds memory or delivery for the others. Default 10 s.
        public var readerWriteTimeout: Duration
        /// Bytes of events written to a reader at once (its share of memory while it is slow). Default 256 KiB.
        public var maximumWriteBytes: Int
        /// What the keep-alive interval is measured on: `ContinuousClock` unless a test passes a manual clock.
        public var clock: RelayClock

        public init(
            host: String = "127.0.0.1",
            port: Int = 7071,
            token: BearerToken? = nil,
            keepAliveInterval: Duration = .seconds(15),
            isOptional: Bool = false,
            maximumReaders: Int = 256,
            readerWriteTimeout: Duration = .seconds(10),
            maximumWriteBytes: Int = 256 * 1024,
            clock: RelayClock = .continuous
        ) {
            self.clock = clock
            self.host = host
            self.port = port
            self.token = token
            self.keepAliveInterval = keepAliveInterval
            self.isOptional = isOptional
            self.maximumReaders = maximumReaders
            self.readerWriteTimeout = readerWriteTimeout
            self.maximumWriteBytes = maximumWriteBytes
        }
    }

    public let configuration: Configuration
    public let stream: TelemetryStream
    private let readers = RelayMutex(ReaderStats())
    /// Dropped readers, logged throttled (the first few, then a count per interval).
    private let slowReaders: ProblemLog

    /// The SSE readers now and since start.
    public struct ReaderStats: Sendable, Hashable {
        /// Readers being served now.
        public var active = 0
        /// Readers refused at ``Configuration/maximumReaders``.
        public var refused = 0
        /// Readers dropped because they stopped reading (a write outlasted ``Configuration/readerWriteTimeout``).
        public var droppedSlow = 0
    }

    /// The SSE readers now and since start.
    public var readerStats: ReaderStats { self.readers.withLock { $0 } }
    private let metrics: @Sendable () -> String
    private let egress: (@Sendable () -> String)?
    private let daemon: ClientDaemon?
    private let logger: Logger
    private let listener: HTTPListener
    private let stopping = OneShotSignal<Void>()

    /// Creates the endpoint; `metrics` renders `GET /metrics`. With a `daemon`, the endpoint also serves its
    /// control API (``SubscriptionRoutes``: `/v1/subscriptions`).
    public init(
        configuration: Configuration,
        stream: TelemetryStream,
        logger: Logger,
        daemon: ClientDaemon? = nil,
        egress: (@Sendable () -> String)? = nil,
        metrics: @escaping @Sendable () -> String
    ) {
        self.egress = egress
        self.daemon = daemon
        self.configuration = configuration
        self.listener = HTTPListener(host: configuration.host, port: configuration.port)
        self.stream = stream
        self.metrics = metrics
        self.logger = logger
        self.slowReaders = ProblemLog(logger: logger)
    }

    /// Waits until the endpoint listens; returns its port (`-1` when an optional endpoint could not listen).
    public func waitUntilListening() async throws -> Int {
        try await self.listener.waitUntilListening()
    }

    public func run() async throws {
        let application = self.listener.application(router: self.makeRouter(), logger: self.logger)
        // Open streams never end by themselves: end them when shutdown begins, so the server can drain.
        do {
            try await withGracefulShutdownHandler {
                try await application.run()
            } onGracefulShutdown: {
                self.stopping.fulfill(())
            }
        } catch where self.configuration.isOptional && !self.listener.isListening {
            self.logger.warning(
                "the local endpoint cannot listen; running without the SSE stream and /metrics (choose another listen address)",
                metadata: ["listen": "\(self.configuration.host):\(self.configuration.port)", "error": "\(ListenFailure.reason(error))"]
            )
            self.listener.giveUp()
            try? await gracefulShutdown()
        } catch where !self.listener.isListening {
            self.listener.giveUp()
            throw ListenFailure(
                host: self.configuration.host,
                port: self.configuration.port,
                error: error,
                advice: "is another client running? choose another --listen address (or --listen off)"
            )
        }
    }

    private func makeRouter() -> Router<ChannelRequestContext> {
        let router = Router(context: ChannelRequestContext.self)
        if let token = self.configuration.token {
            router.add(middleware: BearerTokenMiddleware(token: token, queryParameter: "jwt", openPaths: StaticPage.paths))
        }
        ClientLivePage.page.add(to: router)
        router.get("healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain"], body: ResponseBody(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        router.get("metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: self.metrics() + self.readerMetrics()))
            )
        }
        if let daemon = self.daemon { SubscriptionRoutes.add(to: router, daemon: daemon) }
        if let egress = self.egress {
            router.get("v1/egress") { _, _ in
                Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: egress())))
            }
        }
        router.get("telemetry/stream") { request, context in
            // Every reader gets its own bounded share (one write of at most `maximumWriteBytes`, dropped when it
            // stops reading); their number is bounded too, so readers can never starve the channel or delivery.
            let admitted = self.readers.withLock { readers -> Bool in
                guard readers.active < self.configuration.maximumReaders else {
                    readers.refused += 1
                    return false
                }
                readers.active += 1
                return true
            }
            guard admitted else {
                return Response(
                    status: .serviceUnavailable,
                    headers: [.contentType: "text/plain", .retryAfter: "5"],
                    body: ResponseBody(byteBuffer: ByteBuffer(string: "too many SSE readers (\(self.configuration.maximumReaders)); try again later\n"))
                )
            }
            // The slot goes back when the stream ends, or when the connection closes if the body never ran (a
            // reader gone before the head went out) — once either way.
            let slot = ReaderSlot { self.readers.withLock { $0.active -= 1 } }
            context.channel.closeFuture.whenComplete { _ in slot.release() }
            // `?last_event_id=` for a page that opens a new stream after the old one was refused (a new
            // `EventSource` cannot carry the header).
            let lastEventID = (request.headers[HTTPField.Name("Last-Event-ID")!] ?? request.uri.queryParameters["last_event_id"].map(String.init))
                .flatMap(Self.parseLastEventID)
            self.logger.info(
                "SSE reader connected",
                metadata: [
                    "http.path": "\(request.uri.path)",
                    "auth": "\(request.headers[.authorization] != nil ? "header" : request.uri.queryParameters["jwt"] != nil ? "query" : "none")",
                    "sse.last_event_id": "\(lastEventID.map(String.init) ?? "-")",
                ]
            )
            // Decided before the head goes out: a reader that saw the head gets every event exported after it.
            // `?backlog=N`: a new reader (the live page) starts with the last N events the ring holds (at most the
            // ring, however large N is; a value that is not a number is ignored).
            let backlog = request.uri.queryParameters["backlog"].map { text -> Int in
                let digits = !text.isEmpty && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
                return min(max(Int(text) ?? (digits ? Int.max : 0), 0), self.stream.capacity)
            } ?? 0
            let start = lastEventID ?? max(self.stream.latestID - backlog, self.stream.firstID - 1)
            let filter = StreamFilter(session: request.uri.queryParameters["session"].map(String.init), type: request.uri.queryParameters["type"].map(String.init))
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    defer { slot.release() }
                    do {
                        try await self.serveStream(after: start, filter: filter, writer: &writer, channel: context.channel)
                    } catch is SlowReader {
                        self.readers.withLock { $0.droppedSlow += 1 }
                        self.slowReaders.report(
                            "sse_reader_stopped_reading",
                            "SSE reader dropped: it stopped reading (a write waited past the timeout); the channel and delivery were not held",
                            metadata: ["sse.write_timeout_s": "\(self.configuration.readerWriteTimeout.components.seconds)"]
                        )
                        return
                    }
                    try await writer.finish(nil)
                }
            )
        }
        return router
    }

    /// What a reader asked to see: `?session=ID` (a subscription's session label) and `?type=NAME` (the event
    /// name: `telemetry`, `runner_ready`…); either may be left out.
    struct StreamFilter: Sendable {
        var session: String?
        var type: String?

        func admits(_ event: TelemetryStream.Event) -> Bool {
            (self.session == nil || event.session == self.session) && (self.type == nil || event.name == self.type)
        }
    }

    /// Writes events after `id` as they come, with keep-alive comments, until shutdown or the reader leaves.
    private func serveStream(after id: Int, filter: StreamFilter, writer: inout any ResponseBodyWriter, channel: any Channel) async throws {
        var cursor = id
        try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
        while self.stopping.value == nil {
            let generation = self.stream.generation
            let slice = self.stream.events(after: cursor)
            if slice.missed > 0 {
                try await writer.write(ByteBuffer(string: ": \(slice.missed) events are no longer held and were skipped\n\n"))
            }
            if !slice.events.isEmpty {
                var buffer = ByteBuffer()
                for event in slice.events {
                    cursor = event.id
                    guard filter.admits(event) else { continue }
                    buffer.writeString("id: \(event.id)\nevent: \(event.name)\ndata: ")
                    buffer.writeImmutableBuffer(event.data)
                    buffer.writeString("\n\n")
                    // One write holds at most this much for a reader; the rest waits in the shared ring.
                    if buffer.readableBytes >= self.configuration.maximumWriteBytes { break }
                }
                if buffer.readableBytes > 0 { try await self.write(buffer, to: &writer, channel: channel) }
                continue
            }
            let woke = await self.waitForEvents(past: generation)
            if !woke, self.stopping.value == nil { try await self.write(ByteBuffer(string: ": keep-alive\n\n"), to: &writer, channel: channel) }
        }
    }

    /// The readers' counters in Prometheus text, after the client's own.
    private func readerMetrics() -> String {
        let stats = self.readerStats
        var text = PrometheusText()
        text.add("sse_readers", .gauge, "SSE readers being served.", stats.active)
        text.add("sse_readers_refused_total", .counter, "SSE readers refused at the limit (503).", stats.refused)
        text.add("sse_readers_dropped_total", .counter, "SSE readers dropped because they stopped reading.", stats.droppedSlow)
        return text.text
    }

    /// A reader that stopped reading: its write outlasted ``Configuration/readerWriteTimeout``.
    struct SlowReader: Error {}

    /// Writes to one reader within the write timeout. A reader that does not take it in time (it stopped reading)
    /// has its connection closed — the only way to abort a write that waits for the peer — and is counted.
    private func write(_ buffer: ByteBuffer, to writer: inout any ResponseBodyWriter, channel: any Channel) async throws {
        let timeout = self.configuration.readerWriteTimeout
        let stalled = OneShotSignal<Void>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do { try await Task.sleep(for: timeout) } catch { return }  // cancelled: the write went out
                stalled.fulfill(())
                channel.close(promise: nil)
            }
            defer { group.cancelAll() }
            do {
                try await writer.write(buffer)
            } catch where stalled.value != nil {
                throw SlowReader()
            }
        }
    }

    /// Waits for new events, the keep-alive interval, or shutdown; `true` when events (or shutdown) came.
    private func waitForEvents(past generation: UInt64) async -> Bool {
        await untilFirst(
            { await self.stream.waitForEvents(past: generation) },
            { _ = await self.stopping.wait() },
            { try? await self.configuration.clock.sleep(for: self.configuration.keepAliveInterval) }
        )
        return self.stream.generation != generation || self.stopping.value != nil
    }

    /// A `Last-Event-ID` is the reader's word: an id this stream could have given (0…2^53−1), else ignored.
    static func parseLastEventID(_ value: String) -> Int? { TrickleSeq.parseHeader(value) }
}

/// One admitted SSE reader's place in the count, given back exactly once.
private final class ReaderSlot: Sendable {
    private let released = RelayMutex(false)
    private let onRelease: @Sendable () -> Void

    init(onRelease: @escaping @Sendable () -> Void) { self.onRelease = onRelease }

    func release() {
        let first = self.released.withLock { released -> Bool in
            defer { released = true }
            return !released
        }
        if first { self.onRelease() }
    }
}
