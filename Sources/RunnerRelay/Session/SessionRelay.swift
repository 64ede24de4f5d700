public import AsyncHTTPClient
public import Logging
public import ServiceLifecycle
public import TrickleProtocol
import TrickleRelaySupport

/// One session's relay: its events writer and its ``TrickleEventsSink``, installed when the session starts and
/// torn down when it ends (flush within a deadline, close the channel, report what was sent and lost).
public final class SessionRelay: Service, Sendable {
    /// Configuration of a session relay.
    public struct Configuration: Sendable {
        /// The session's events channel.
        public var eventsURL: TrickleChannelURL
        /// The sink's settings (identity, consent, bounds, scrubbing).
        public var sink: TrickleEventsSink.Configuration
        /// The writer's settings (segment window and cap).
        public var writer: JSONLWriter.Configuration
        /// How long teardown may take to flush what is queued before the rest is given up; closing the channel
        /// after it (the last segment, the linger, the DELETE) may take as long again (at least 5 s) plus the
        /// linger, whatever the server does: a server that stops reading or answering cannot hold the session
        /// open, and what its uploads still held when the close gave up is counted `lost`. Default 5 s.
        public var flushTimeout: Duration

        public init(
            eventsURL: TrickleChannelURL,
            sink: TrickleEventsSink.Configuration,
            writer: JSONLWriter.Configuration = .init(),
            flushTimeout: Duration = .seconds(5)
        ) {
            self.eventsURL = eventsURL
            self.sink = sink
            self.writer = writer
            self.flushTimeout = flushTimeout
        }
    }

    /// What a session relayed, reported at teardown.
    public struct Summary: Sendable, Hashable, Codable {
        public var sessionID: String
        public var sink: TrickleEventsSink.Stats
        public var segments: Int
        public var failedSegments: Int
        /// Whether the flush finished within the deadline.
        public var flushedInTime: Bool
        /// The last reason a segment did not reach the server, in words (a certificate problem names its cause
        /// and fix); `nil` if every request reached it.
        public var connectionProblem: String? = nil
    }

    public let configuration: Configuration
    /// The session's sink: `emit` telemetry and `sendControl` control events here.
    public let sink: TrickleEventsSink
    /// The session's events writer.
    public let writer: JSONLWriter
    private let finishRequested = OneShotSignal<Void>()
    private let flushOutcome = OneShotSignal<Bool>()
    private let closeEnded = OneShotSignal<Void>()
    private let logger: Logger

    /// Creates a relay; nothing is sent until the first event.
    public init(configuration: Configuration, httpClient: HTTPClient, logger: Logger) {
        var logger = logger
        logger[metadataKey: "session.id"] = "\(configuration.sink.identity.sessionID)"
        self.logger = logger
        var writerConfiguration = configuration.writer
        writerConfiguration.closesOnGracefulShutdown = false  // the relay flushes its queue first
        if writerConfiguration.publisher.mimeType == "application/octet-stream" {
            writerConfiguration.publisher.mimeType = "application/jsonl"
        }
        self.configuration = configuration
        self.writer = JSONLWriter(
            url: configuration.eventsURL,
            httpClient: httpClient,
            configuration: writerConfiguration,
            logger: logger
        )
        self.sink = TrickleEventsSink(writer: self.writer, configuration: configuration.sink, logger: logger)
    }

    /// Runs until ``finish()`` (or graceful shutdown) and the flush and close that follow.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await self.writer.run() }
                group.addTask {
                    try await self.sink.run()
                    if self.flushOutcome.fulfill(true) { await self.closeChannel() }
                }
                group.addTask {
                    guard await self.finishRequested.wait() != nil else { return }
                    try await Task.sleep(for: self.configuration.flushTimeout)
                    // The flush overran its deadline: give up what is still queued and close the channel, bounded
                    // like any close: a server that stopped reading (hung, SIGSTOPped) must not hold the session —
                    // and with it SIGTERM — forever. Uploads cut short complete as failed: their events are `lost`.
                    if self.flushOutcome.fulfill(false) { await self.closeChannel() }
                }
                // The session ends once the channel was closed (the final segment sent and the DELETE answered,
                // so readers see end of stream), the close gave up, or a part failed. Not when `writer.run()`
                // or the flush deadline returns first: cancelling the rest then could cancel the DELETE in flight,
                // and readers would wait at the live edge for a segment that never comes.
                var failure: (any Error)?
                while let result = await group.nextResult() {
                    if case .failure(let error) = result, !(error is CancellationError) {
                        failure = error
                        break
                    }
                    if self.closeEnded.value != nil { break }
                }
                group.cancelAll()
                while await group.nextResult() != nil {}
                if let failure { throw failure }
            }
        } onGracefulShutdown: {
            self.finish()
        }
    }

    /// Sends the last segment and deletes the channel (after the publisher's linger), within the linger plus
    /// ``Configuration/flushTimeout`` (at least 5 s: a loaded machine must still get its DELETE out, and a server
    /// that fails every request must not hold the session open); a failure is logged, and counted by the
    /// publisher.
    private func closeChannel() async {
        let close: @Sendable () async -> Void = {
            do {
                try await self.writer.close()
            } catch {
                self.logger.warning("closing the events channel failed", metadata: ["error": "\(error)"])
            }
        }
        await untilFirst(close, { try? await Task.sleep(for: self.closeTimeout) })
        self.closeEnded.fulfill(())
    }

    /// The longest a close may take: the linger plus the flush deadline, at least 5 s.
    var closeTimeout: Duration { max(self.configuration.flushTimeout, .seconds(5)) + self.configuration.writer.publisher.lingerBeforeDelete }

    /// Starts teardown: intake stops, the queue is flushed within ``Configuration/flushTimeout``, the channel is
    /// closed (readers see end of stream), and ``run()`` returns.
    public func finish() {
        self.sink.finish()
        self.finishRequested.fulfill(())
    }

    /// What the session relayed so far (final once ``run()`` returned).
    public var summary: Summary {
        let publisher = self.writer.publisher.stats
        return Summary(
            sessionID: self.configuration.sink.identity.sessionID,
            sink: self.sink.stats,
            segments: publisher.segments,
            failedSegments: publisher.failedSegments,
            flushedInTime: self.flushOutcome.value ?? true,
            connectionProblem: publisher.lastConnectionProblem?.description
        )
    }
}
