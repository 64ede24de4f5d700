public import AsyncHTTPClient
public import Logging
public import ServiceLifecycle
public import TrickleProtocol

/// The client side of a session: subscribes to the events channel, dispatches every line (telemetry to the
/// egress sink, the rest to local consumers), and rides out server restarts (the subscriber retries with
/// back-off). Ends when the channel ends (`Lp-Trickle-Closed` or 404) or on graceful shutdown, then flushes
/// (at the channel's end only) and shuts the sink down.
///
/// A sink that runs work of its own (the metrics reporter's sending loop, a spool's delivery loop) is passed as
/// one of `sinkServices`: the daemon runs it beside the dispatcher and stops it through the sink's `shutdown()`
/// after the last dispatch — so the sink never stops while lines are still being handed to it, and a service
/// group sees one service, the daemon, finish.
public final class ClientDaemon: Service, Sendable {
    public let dispatcher: EventDispatcher
    private let reader: JSONLReader
    private let sink: any EgressSink
    private let logger: Logger
    private let end = OneShotSignal<TrickleSubscriber.EndOfStream?>()
    private let resumePoint: (seq: Int, line: Int)?
    private let sinkServices: [any Service]

    public init(
        eventsURL: TrickleChannelURL,
        httpClient: HTTPClient,
        reader configuration: JSONLReader.Configuration = .init(),
        sink: any EgressSink,
        logger: Logger,
        resumingAfter resumePoint: (seq: Int, line: Int)? = nil,
        sinkServices: [any Service] = [],
        localConsumer: @escaping @Sendable (EventDispatcher.LocalEvent) async -> Void = { _ in }
    ) {
        var configuration = configuration
        configuration.validatesLines = false  // the dispatcher validates each line in the scan that routes it
        self.reader = JSONLReader(url: eventsURL, httpClient: httpClient, configuration: configuration, logger: logger)
        self.dispatcher = EventDispatcher(sink: sink, logger: logger, localConsumer: localConsumer)
        self.sink = sink
        self.logger = logger
        self.resumePoint = resumePoint
        self.sinkServices = sinkServices
    }

    /// How the channel ended; `nil` when the daemon was stopped first.
    public var endOfStream: TrickleSubscriber.EndOfStream? { self.end.value ?? nil }

    /// The subscriber's counters.
    public var subscriberStats: TrickleSubscriber.Stats { self.reader.subscriber.stats }

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in self.sinkServices {
                group.addTask { try await service.run() }
            }
            do {
                let end = try await cancelWhenGracefulShutdown {
                    try await self.dispatcher.run(reader: self.reader, resumingAfter: self.resumePoint)
                }
                self.end.fulfill(end)
                self.logger.info("events channel ended", metadata: ["trickle.end": "\(end)"])
            } catch is CancellationError {
                self.end.fulfill(nil)
            }
            // At the channel's end, deliver what is buffered; on SIGTERM (graceful shutdown) do not wait for a
            // remote side: a spooled sink keeps the rest for the next start.
            try? await cancelWhenGracefulShutdown { try await self.sink.forceFlush() }
            await self.sink.shutdown()
            try await group.waitForAll()
        }
    }
}
