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
public import ServiceLifecycle
public import TrickleProtocol

/// The client daemon's local HTTP endpoint:
///
/// | route | what |
/// | --- | --- |
/// | `GET /telemetry/stream` | `text/event-stream`: every relayed envelope as `id: <n>`, `event: telemetry`, `data: <envelope>`, and every other event of the channel as `event: <its type>`, `data: <its line>`; `Last-Event-ID` resumes from the ring; a `: keep-alive` comment every 15 s |
/// | `GET /healthz` | liveness, never needs the token |
/// | `GET /metrics` | Prometheus text |
/// | `/v1/subscriptions` | the daemon's control API (``SubscriptionRoutes``) |
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

        public init(
            host: String = "127.0.0.1",
            port: Int = 7071,
            token: BearerToken? = nil,
            keepAliveInterval: Duration = .seconds(15),
            isOptional: Bool = false
        ) {
            self.host = host
            self.port = port
            self.token = token
            self.keepAliveInterval = keepAliveInterval
            self.isOptional = isOptional
        }
    }

    public let configuration: Configuration
    public let stream: TelemetryStream
    private let metrics: @Sendable () -> String
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
        metrics: @escaping @Sendable () -> String
    ) {
        self.daemon = daemon
        self.configuration = configuration
        self.listener = HTTPListener(host: configuration.host, port: configuration.port)
        self.stream = stream
        self.metrics = metrics
        self.logger = logger
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
                metadata: ["listen": "\(self.configuration.host):\(self.configuration.port)", "error": "\(error)"]
            )
            self.listener.giveUp()
            try? await gracefulShutdown()
        }
    }

    private func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        if let token = self.configuration.token { router.add(middleware: BearerTokenMiddleware(token: token, queryParameter: "jwt")) }
        router.get("healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain"], body: ResponseBody(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        router.get("metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: self.metrics()))
            )
        }
        if let daemon = self.daemon { SubscriptionRoutes.add(to: router, daemon: daemon) }
        router.get("telemetry/stream") { request, _ in
            let lastEventID = request.headers[HTTPField.Name("Last-Event-ID")!].flatMap(Self.parseLastEventID)
            self.logger.info(
                "SSE reader connected",
                metadata: [
                    "http.path": "\(request.uri.path)",
                    "auth": "\(request.headers[.authorization] != nil ? "header" : request.uri.queryParameters["jwt"] != nil ? "query" : "none")",
                    "sse.last_event_id": "\(lastEventID.map(String.init) ?? "-")",
                ]
            )
            // Decided before the head goes out: a reader that saw the head gets every event exported after it.
            let start = lastEventID ?? self.stream.latestID
            let filter = StreamFilter(session: request.uri.queryParameters["session"].map(String.init), type: request.uri.queryParameters["type"].map(String.init))
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    try await self.serveStream(after: start, filter: filter, writer: &writer)
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
    private func serveStream(after id: Int, filter: StreamFilter, writer: inout any ResponseBodyWriter) async throws {
        var cursor = id
        try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
        while self.stopping.value == nil {
            let generation = self.stream.generation
            let slice = self.stream.events(after: cursor)
            if slice.missed > 0 {
                try await writer.write(ByteBuffer(string: ": \(slice.missed) events are no longer held and were skipped\n\n"))
            }
            if let last = slice.events.last {
                let events = slice.events.filter(filter.admits)
                cursor = last.id
                guard !events.isEmpty else { continue }
                var buffer = ByteBuffer()
                buffer.reserveCapacity(events.reduce(0) { $0 + $1.data.readableBytes + $1.name.utf8.count + 32 })
                for event in events {
                    buffer.writeString("id: \(event.id)\nevent: \(event.name)\ndata: ")
                    buffer.writeImmutableBuffer(event.data)
                    buffer.writeString("\n\n")
                }
                try await writer.write(buffer)
                continue
            }
            let woke = await self.waitForEvents(past: generation)
            if !woke, self.stopping.value == nil { try await writer.write(ByteBuffer(string: ": keep-alive\n\n")) }
        }
    }

    /// Waits for new events, the keep-alive interval, or shutdown; `true` when events (or shutdown) came.
    private func waitForEvents(past generation: UInt64) async -> Bool {
        await untilFirst(
            { await self.stream.waitForEvents(past: generation) },
            { _ = await self.stopping.wait() },
            { try? await Task.sleep(for: self.configuration.keepAliveInterval) }
        )
        return self.stream.generation != generation || self.stopping.value != nil
    }

    /// A `Last-Event-ID` is the reader's word: an id this stream could have given (0…2^53−1), else ignored.
    static func parseLastEventID(_ value: String) -> Int? { TrickleSeq.parseHeader(value) }
}
