#if canImport(Glibc)
import Glibc
#endif
public import Logging
import NIOHTTP1
import NIOHTTP2
import NIOSSL
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
public import TrickleRelaySupport

/// An embedded trickle server: the segmented HTTP pub/sub protocol of Livepeer's trickle channels, for local
/// use and tests.
///
/// It follows the production server's semantics (go-livepeer `trickle/`, see `trickle-protocol.md`): channel
/// create and delete, segment POST and GET streamed live from byte 0, `-1`/`-2`, the ring of 5, `470` with
/// `Lp-Trickle-Latest`, `Lp-Trickle-Closed`, `Lp-Trickle-Reset`, interim `100` replies for idle preconnected
/// POSTs, and the idle sweep. Where both reference servers misbehave it does better, and says so in comments.
///
/// ```swift
/// let server = TrickleServer(configuration: .init(port: 0), logger: logger)
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await server.run() }
///     let port = try await server.waitUntilListening()
///     // …publish to http://127.0.0.1:\(port)/my-channel
/// }
/// ```
public final class TrickleServer: Service, Sendable {
    /// The server's configuration.
    public let configuration: Configuration
    private let logger: Logger
    private let eventLoopGroup: any EventLoopGroup
    private let registry: ChannelRegistry
    private let listening = OneShotSignal<Result<Int, TrickleServerError>>()
    private let ingestGate = PauseGate()

    /// Creates a server; it listens once ``run()`` is called. Its timers — the idle sweep, the deleted channels'
    /// grace period, the wait for a vanished writer to come back — run on `clock` (tests pass a manual one).
    public init(
        configuration: Configuration = .init(),
        logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        clock: some Clock<Duration> = ContinuousClock()
    ) {
        self.configuration = configuration
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
        self.registry = ChannelRegistry(
            ringSize: max(configuration.ringSize, 1),
            gracePeriod: configuration.deletedChannelGracePeriod,
            maximumChannels: max(configuration.maximumChannels, 0),
            accounting: ServerAccounting(maximumRetainedBytes: max(configuration.maximumRetainedBytes, 0)),
            clock: RelayClock(clock),
            announcesChanges: configuration.announcesChannels
        )
    }

    /// Runs the server until graceful shutdown or cancellation. Shutting down closes every channel, which
    /// releases waiting subscribers with `Lp-Trickle-Closed`.
    public func run() async throws {
        let router = TrickleRequestRouter(
            registry: self.registry,
            configuration: self.configuration,
            basePath: self.configuration.normalizedBasePath,
            logger: self.logger,
            metrics: { [weak self] in self?.metricsText() ?? "" }
        )
        let connections = ServerConnections()
        let serverChannel: any Channel
        do {
            serverChannel = try await self.bootstrap(router: router, connections: connections)
                .bind(host: self.configuration.host, port: self.configuration.port)
                .get()
        } catch {
            let failure = TrickleServerError(.cannotListen, "\(ListenFailure(host: self.configuration.host, port: self.configuration.port, error: error))")
            self.listening.fulfill(.failure(failure))
            throw failure
        }
        self.listening.fulfill(.success(serverChannel.localAddress?.port ?? 0))
        let stop: @Sendable () -> Void = {
            // Closing every channel releases waiting readers and writers with `Lp-Trickle-Closed`; connections
            // then close once their response is written.
            self.registry.closeAll()
            serverChannel.close(promise: nil)
            connections.shutDown()
        }
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try? await serverChannel.closeFuture.get() }
                    group.addTask { await cancelWhenGracefulShutdown { await self.sweepIdleChannels() } }
                    group.addTask { await cancelWhenGracefulShutdown { await self.housekeeping() } }
                    if let feed = self.registry.changeFeed {
                        let registry = self.registry
                        let loop = self.eventLoopGroup.any()
                        group.addTask { await cancelWhenGracefulShutdown { await feed.run(on: loop, now: { registry.clock.now }) } }
                    }
                    if let recording = self.configuration.metricsRecording {
                        let recorder = MetricsRecorder(recording, bridge: self.configuration.metricsExposition?.bridge) { [weak self] in
                            self?.metricsSnapshot() ?? PrometheusText()
                        }
                        group.addTask { try await recorder.run() }
                    }
                }
            } onGracefulShutdown: {
                stop()
            }
        } onCancel: {
            stop()
        }
        // Connections still writing get a moment to finish their response, then are closed.
        await connections.waitUntilClosed(timeout: .seconds(2), on: serverChannel.eventLoop)
        connections.closeAll()
    }

    private func bootstrap(router: TrickleRequestRouter, connections: ServerConnections) -> ServerBootstrap {
        let ingestGate = self.ingestGate
        let logger = self.logger
        let tls = self.configuration.tls
        return ServerBootstrap(group: self.eventLoopGroup)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                @Sendable func http1(_ channel: any Channel) -> EventLoopFuture<Void> {
                    channel.eventLoop.makeCompletedFuture {
                        // NIO's HTTP/1 codec with bounded headers and `400` for what does not parse. Without NIO's
                        // pipelining assistance: it stops reading while a response is pending, so a reader waiting
                        // on a segment that hung up would go unnoticed; the handler holds pipelined requests itself.
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                            withPipeliningAssistance: false,
                            withErrorHandling: true
                        )
                        try channel.pipeline.syncOperations.addHandler(
                            TrickleConnectionHandler(router: router, ingestGate: ingestGate, logger: logger)
                        )
                    }
                }
                @Sendable func http2(_ channel: any Channel) -> EventLoopFuture<Void> {
                    // Each stream is one request: NIO's HTTP/2 → HTTP/1 translation in front of the same handler.
                    var connection = NIOHTTP2Handler.ConnectionConfiguration()
                    connection.initialSettings = Self.http2Settings
                    return channel.configureHTTP2Pipeline(mode: .server, connectionConfiguration: connection, streamConfiguration: .init()) { stream in
                        stream.eventLoop.makeCompletedFuture {
                            try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ServerCodec())
                            try stream.pipeline.syncOperations.addHandler(
                                TrickleConnectionHandler(router: router, ingestGate: ingestGate, logger: logger)
                            )
                        }
                    }.map { _ in }
                }
                connections.add(channel)
                guard let tls else { return http1(channel) }
                do {
                    // TLS first, with the certificate pair current when the connection arrived (SIGHUP swaps it).
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                guard tls.offersHTTP2 else { return http1(channel) }
                return channel.configureHTTP2SecureUpgrade(h2ChannelConfigurator: http2, http1ChannelConfigurator: http1)
            }
    }

    /// What an HTTP/2 connection allows: Go's net/http defaults (go-livepeer's server), so a client multiplexes as
    /// it would against an orchestrator — 250 concurrent streams, a 1 MiB stream window.
    static let http2Settings: HTTP2Settings = [
        HTTP2Setting(parameter: .maxConcurrentStreams, value: 250),
        HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
        HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 16),
    ]

    /// Waits until the server listens and returns its port (useful with port `0`).
    ///
    /// - Throws: ``TrickleServerError`` if binding failed or the server stopped first; `CancellationError`.
    public func waitUntilListening() async throws -> Int {
        guard let result = await self.listening.wait() else { throw CancellationError() }
        return try result.get()
    }

    /// Creates a channel (for servers run with `autocreate` off, like an orchestrator making a job's channels).
    public func createChannel(named name: String, mimeType: String = "application/jsonl") {
        _ = self.registry.channel(named: name, creatingWith: mimeType, enforcingLimit: false)
    }

    /// Deletes a channel as `DELETE {channel}` would; returns whether it existed.
    @discardableResult
    public func deleteChannel(named name: String) -> Bool {
        self.registry.remove(named: name)
    }

    /// Stops reading segment bodies (publishers then feel TCP back-pressure) until ``resumeIngest()``: a way to
    /// reproduce a stalled or slow server, for tests and debugging.
    public func pauseIngest() { self.ingestGate.pause() }

    /// Resumes reading segment bodies after ``pauseIngest()``.
    public func resumeIngest() { self.ingestGate.resume() }

    /// The number of live channels.
    public var channelCount: Int { self.registry.count }

    /// Segment bytes held in memory right now, across every channel.
    public var retainedBytes: Int { self.registry.accounting.retainedBytes }

    /// Deleted channels still readable in their grace period (their segments are held until it ends).
    public var deletedChannelsReadable: Int { self.registry.tombstoneCount }

    /// The server's metrics in the Prometheus text format (what `GET /metrics` serves).
    public func metricsText() -> String {
        MetricsExposition.body(for: self.metricsSnapshot(), exposition: self.configuration.metricsExposition)
    }

    /// The server's counters and gauges now (what `GET /metrics` serves).
    public func metricsSnapshot() -> PrometheusText {
        let accounting = self.registry.accounting
        let channels = self.registry.allChannels
        var text = PrometheusText(prefix: "trickle_server_")
        text.add("channels", .gauge, "Live channels.", channels.count)
        text.add("channels_maximum", .gauge, "The live-channel bound (--max-channels).", self.configuration.maximumChannels)
        text.add("deleted_channels_readable", .gauge, "Deleted channels still readable in their grace period.", self.registry.tombstoneCount)
        text.add("retained_bytes", .gauge, "Segment bytes held in memory.", accounting.retainedBytes)
        text.add("retained_bytes_maximum", .gauge, "The retained-bytes bound (--max-retained-bytes).", accounting.maximumRetainedBytes)
        text.add("readers", .gauge, "Segment GETs being served.", channels.reduce(0) { $0 + $1.activeReaders })
        text.add("writers", .gauge, "Segment POSTs in progress.", channels.reduce(0) { $0 + $1.activeWriters })
        text.add("segments_total", .counter, "Segments that received a first byte.", accounting.segments)
        text.add("received_bytes_total", .counter, "Segment body bytes received.", accounting.bytes)
        for refusal in ServerAccounting.Refusal.allCases {
            text.add("refused_\(refusal.label)_total", .counter, "Requests refused: \(refusal.label.split(separator: "_").joined(separator: " ")).", accounting.refused(refusal))
        }
        return text
    }

    /// nextWrite of a channel, or `nil` when it does not exist.
    public func nextWrite(ofChannel name: String) -> Int? {
        self.registry.channel(named: name)?.nextWrite
    }

    /// GETs being served on a channel right now (waiting at the live edge or streaming); 0 if it does not exist.
    public func activeReaders(ofChannel name: String) -> Int {
        self.registry.channel(named: name)?.activeReaders ?? 0
    }

    /// Segment POSTs in progress on a channel right now (preconnected or streaming); 0 if it does not exist.
    public func activeWriters(ofChannel name: String) -> Int {
        self.registry.channel(named: name)?.activeWriters ?? 0
    }

    /// Ends segments whose writer vanished and did not come back within the timeout, and frees deleted channels
    /// once their grace period is over (without waiting for the next delete or sweep: a server that cycles many
    /// channels and then goes quiet must give their segments back).
    private func housekeeping() async {
        let timeout = self.configuration.interruptedSegmentTimeout
        let grace = self.configuration.deletedChannelGracePeriod
        let interval = max(min(timeout / 4, grace > .zero ? grace / 2 : timeout / 4), .milliseconds(10))
        while !Task.isCancelled {
            do {
                try await self.registry.clock.sleep(for: interval)
            } catch {
                return
            }
            self.registry.closeAbandonedSegments(olderThan: timeout)
            self.registry.purgeExpiredTombstones()
            // Segments are freed as channels end, but glibc keeps freed memory in the heaps of the threads that
            // allocated it: a server that once held a lot would keep that RSS for good (measured: 10 cycles of
            // 20 × 4 MiB segments left 225 MB with nothing retained). Hand it back after a large drop.
            if self.registry.accounting.takeReleasedSinceHighWater() >= Self.trimThreshold { Self.returnFreedMemory() }
        }
    }

    /// Bytes that must have been freed since the last high-water mark before memory is handed back to the OS.
    static let trimThreshold = 16 * 1024 * 1024

    private static func returnFreedMemory() {
        _ = Self.mallocTrim?(0)
    }

    /// glibc's `malloc_trim` (not in Swift's Glibc module), looked up once; `nil` on another C library.
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        #else
        return nil
        #endif
    }()

    private func sweepIdleChannels() async {
        while !Task.isCancelled {
            do {
                try await self.registry.clock.sleep(for: self.configuration.idleSweepInterval)
            } catch {
                return
            }
            let removed = self.registry.sweep(idleFor: self.configuration.idleChannelTimeout)
            if !removed.isEmpty {
                self.logger.debug("trickle idle channels swept", metadata: ["trickle.swept": "\(removed.count)"])
            }
        }
    }
}

/// The embedded server could not start.
public struct TrickleServerError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure (a caller branches on it: a listen failure is exit 1 for `serve`).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The listening socket could not be bound (the port is taken, the address is not local…).
        public static let cannotListen = Code("cannotListen")
        public var description: String { self.name }
    }

    public var code: Code
    /// What went wrong and what to do.
    public var message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { self.message }
}
