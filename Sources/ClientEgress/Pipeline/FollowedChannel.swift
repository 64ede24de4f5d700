import AsyncHTTPClient
import Logging
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// One subscription at run time: its reader, its dispatcher (and so its own counters and read position), the
/// sink it feeds (the daemon's one sink, with the SSE stream beside it), and its state.
final class FollowedChannel: Sendable {
    enum Phase: Sendable, Hashable {
        case running
        case finished(TrickleSubscriber.EndOfStream)
        case stopped
        case failed(String)
    }

    let subscription: ChannelSubscription
    let dispatcher: EventDispatcher
    private let reader: JSONLReader
    private let resumePoint: (seq: Int, line: Int)?
    private let phase = RelayMutex(Phase.running)
    private let lastProblem = LatestProblem()
    /// How reading ends: ``stop()``, or the reading task's own end (whichever comes first).
    private let ending = OneShotSignal<Ending>()
    let done = OneShotSignal<Phase>()

    private enum Ending: Sendable {
        case stopped
        case read(Result<TrickleSubscriber.EndOfStream?, any Error>)
    }

    init(
        subscription: ChannelSubscription,
        resumingAfter position: Spool.ChannelPosition?,
        reader configuration: JSONLReader.Configuration,
        tracing: DeliveryTracing = .off,
        httpClient: HTTPClient,
        sink: any EgressSink,
        stream: TelemetryStream?,
        logger: Logger,
        localConsumer: @escaping @Sendable (ChannelSubscription, EventDispatcher.LocalEvent) async -> Void
    ) {
        var logger = logger
        logger[metadataKey: "subscription.id"] = "\(subscription.id)"
        var configuration = configuration
        configuration.validatesLines = false  // the dispatcher validates each line in the scan that routes it
        configuration.subscriber.start = position.map { .seq($0.seq) } ?? subscription.start
        if let tracer = tracing.tracer {
            let channel = subscription.eventsURL.channelName
            configuration.onSegmentRead = { read in DeliveryTracing.traceSegmentRead(read, channel: channel, tracer: tracer) }
        }
        self.subscription = subscription
        self.resumePoint = position.map { ($0.seq, $0.line) }
        self.reader = JSONLReader(url: subscription.eventsURL, httpClient: httpClient, configuration: configuration, logger: logger)
        let lastProblem = self.lastProblem
        self.dispatcher = EventDispatcher(
            sink: stream.map { ChannelTap(downstream: sink, stream: $0, session: subscription.sessionID) } ?? sink,
            logger: logger,
            subscription: subscription.id,
            tracing: tracing,
            onProblem: { problem in lastProblem.note(problem) },
            localConsumer: { event in
                stream?.publish(event, session: subscription.sessionID)
                await localConsumer(subscription, event)
            }
        )
        if let position {
            logger.info("resuming from the spool's read position", metadata: ["trickle.seq": "\(position.seq)", "line": "\(position.line)"])
        }
    }

    var currentPhase: Phase { self.phase.withLock { $0 } }
    var subscriberStats: TrickleSubscriber.Stats { self.reader.subscriber.stats }

    /// The channel is expected to exist now: a subscriber waiting for it asks at once.
    func expectChannel() { self.reader.subscriber.expectChannel() }

    /// Follows the channel until it ends, ``stop()`` is called, or the task is cancelled.
    nonisolated(nonsending) func run() async -> Phase {
        let outcome: Phase
        do {
            let end = try await self.runUntilStopped()
            outcome = end.map { .finished($0) } ?? .stopped
        } catch is CancellationError {
            outcome = .stopped
        } catch {
            outcome = .failed("\(error)")
        }
        self.phase.withLock { $0 = outcome }
        self.done.fulfill(outcome)
        return outcome
    }

    /// Stops following (what was dispatched stays dispatched).
    func stop() { self.ending.fulfill(.stopped) }

    private func runUntilStopped(isolation: isolated (any Actor)? = #isolation) async throws -> TrickleSubscriber.EndOfStream? {
        // One task reads; this one waits for its end or a stop, whichever comes first (a stop cancels the
        // reading). No task of its own for waiting on the stop: 10,000 followed channels are 10,000 fewer tasks.
        let ending: Ending? = await withTaskGroup(of: Void.self) { group in
            // The reading task keeps the caller's isolation (its event loop): passed on explicitly, as a child
            // task does not inherit it.
            group.addTask {
                let result: Result<TrickleSubscriber.EndOfStream?, any Error>
                do {
                    result = .success(try await self.dispatcher.run(reader: self.reader, resumingAfter: self.resumePoint, isolation: isolation))
                } catch {
                    result = .failure(error)
                }
                self.ending.fulfill(.read(result))
            }
            let ending = await self.ending.wait()  // nil: this task was cancelled (and so is the reading one)
            group.cancelAll()
            return ending
        }
        switch ending {
        case .read(let result): return try result.get()
        case .stopped, nil: return nil
        }
    }

    /// Its state as listed (`waiting`, `following`, `finished`, `stopped`, `failed`), without building a snapshot:
    /// the metrics count states over every subscription at each scrape.
    var stateName: String {
        Self.state(of: self.currentPhase, hasRead: { self.reader.subscriber.stats.segments > 0 || self.dispatcher.stats.lines > 0 }).name
    }

    private static func state(of phase: Phase, hasRead: () -> Bool) -> (name: String, end: String?) {
        switch phase {
        case .running: return (hasRead() ? "following" : "waiting", nil)
        case .finished(let how): return ("finished", how == .closed ? "closed" : "not_found")
        case .stopped: return ("stopped", nil)
        case .failed(let reason): return ("failed", reason)
        }
    }

    /// What `GET /v1/subscriptions` shows of it.
    func snapshot() -> SubscriptionSnapshot {
        let counters = self.dispatcher.stats
        let subscriber = self.reader.subscriber.stats
        let (state, end) = Self.state(of: self.currentPhase, hasRead: { subscriber.segments > 0 || counters.lines > 0 })
        return SubscriptionSnapshot(
            id: self.subscription.id,
            eventsURL: self.subscription.eventsURL.description,
            sessionID: self.subscription.sessionID,
            start: self.subscription.start.description,
            origin: self.subscription.origin.rawValue,
            state: state,
            end: end,
            segments: subscriber.segments,
            lines: counters.lines,
            events: counters.telemetry,
            gaps: counters.segmentsLost,
            lastSeq: counters.lastSeq,
            malformed: counters.malformed + counters.nonObject + counters.telemetryWithoutObjectEvent,
            oversize: counters.oversize,
            retries: subscriber.retries,
            reconnects: subscriber.reconnects,
            skippedOnResume: counters.skippedOnResume,
            lastProblem: self.lastProblem.text,
            connectionProblem: subscriber.lastConnectionProblem?.description
        )
    }
}

/// Feeds the daemon's one sink and publishes the same records on the SSE stream, labelled with the
/// subscription's session.
struct ChannelTap: EgressSink {
    let downstream: any EgressSink
    let stream: TelemetryStream
    let session: String

    nonisolated(nonsending) func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        defer { self.stream.publish(records, session: self.session) }
        try await self.downstream.export(records)
    }

    func forceFlush() async throws {}
    func shutdown() async {}
}

/// The latest input a channel skipped, as a short text (reason and position, never payload).
private final class LatestProblem: Sendable {
    private let latest = RelayMutex<String?>(nil)

    var text: String? { self.latest.withLock { $0 } }

    func note(_ problem: EventDispatcher.Problem) {
        let text = "\(problem.reason) at seq \(problem.seq) line \(problem.lineNumber.map(String.init) ?? "-")"
        self.latest.withLock { $0 = text }
    }
}
