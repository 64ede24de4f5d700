public import AsyncHTTPClient
public import Logging
import NIOCore
public import ServiceLifecycle
import Synchronization
public import TrickleProtocol
import TrickleRelaySupport

/// The client side: follows any number of events channels at once (one ``ChannelSubscription`` each, from
/// flags, a configuration file or the control API), dispatches every line (telemetry to the one egress sink,
/// the rest to local consumers), and rides out server restarts (each subscriber retries with back-off).
///
/// All subscriptions feed one sink (a spooled metrics reporter, a file…), which the daemon runs as a service:
/// it starts it first, and shuts it down after the last dispatch — so the sink never stops while lines are still
/// being handed to it. A channel that ends (`Lp-Trickle-Closed`, or 404) finishes its subscription. With
/// ``Configuration/runsUntilStopped`` the daemon runs until graceful shutdown; otherwise it ends when its last
/// subscription ends (a one-channel client), flushing the sink first.
public final class ClientDaemon: Service, Sendable {
    /// Configuration of a ``ClientDaemon``.
    public struct Configuration: Sendable {
        /// How every channel is read; each subscription's start position replaces `subscriber.start`.
        public var reader: JSONLReader.Configuration
        /// Run until stopped, even with no subscription left (a daemon with a control API or a configuration
        /// file). Default `false`: end with the last subscription.
        public var runsUntilStopped: Bool
        /// Where subscriptions added through the API are persisted; `nil` keeps them in memory only.
        public var store: SubscriptionStore?
        /// Per subscription id, the spool's read position: a subscription resumes just after it the first
        /// time it is followed (the spool's records up to it are delivered by the spool).
        public var resumePositions: [String: Spool.ChannelPosition]
        /// Finished subscriptions kept for listing; older ones leave the list (their counts stay in the totals).
        /// Default 1,000.
        public var finishedHistory: Int
        /// Most subscriptions followed at once (more are refused). Default 10,000.
        public var maximumSubscriptions: Int
        /// The relay's own tracing: each segment read (`trickle_relay.segment.read`) and each batch handed to the
        /// sink (`trickle_relay.dispatch`) becomes a span. Default off.
        public var tracing: DeliveryTracing = .off
        /// Whether subscriptions that wait for their channel (`reader.subscriber.channelWaitTimeout`) follow their
        /// server's channel announcements (its `_changes` feed: one long-poll per server, see
        /// ``ChannelAnnouncements``) instead of each asking often. Default `true`.
        public var followsChannelAnnouncements = true

        public init(
            reader: JSONLReader.Configuration = .init(),
            runsUntilStopped: Bool = false,
            store: SubscriptionStore? = nil,
            resumePositions: [String: Spool.ChannelPosition] = [:],
            finishedHistory: Int = 1_000,
            maximumSubscriptions: Int = 10_000,
            tracing: DeliveryTracing = .off
        ) {
            self.tracing = tracing
            self.reader = reader
            self.runsUntilStopped = runsUntilStopped
            self.store = store
            self.resumePositions = resumePositions
            self.finishedHistory = finishedHistory
            self.maximumSubscriptions = maximumSubscriptions
        }
    }

    private struct State {
        var channels: [String: FollowedChannel] = [:]  // by id: running, then finished until they age out
        var order: [String] = []  // ids in the order added
        var running = 0
        var resumePositions: [String: Spool.ChannelPosition]
        var retired = EventDispatcher.Counters()
        var retiredSubscriber = TrickleSubscriber.Stats()
        var isStopping = false
        var lastEnd: TrickleSubscriber.EndOfStream??
        /// Subscriptions followed in this run, and those whose channel ended: counted whatever the list keeps.
        var followed = 0
        var ended = 0
        /// Per server (its feed URL), the announcements its waiting subscriptions share.
        var announcements: [String: ChannelAnnouncements] = [:]
        /// Per server, the watch its subscriptions share while it does not answer.
        var serverReturns: [HTTPOrigin: ServerReturnWatch] = [:]
    }

    public let configuration: Configuration
    /// The sink every subscription feeds.
    public let sink: any EgressSink
    private let httpClient: HTTPClient
    private let stream: TelemetryStream?
    private let logger: Logger
    private let localConsumer: @Sendable (ChannelSubscription, EventDispatcher.LocalEvent) async -> Void
    private let state: RelayMutex<State>
    private let starts: AsyncStream<FollowedChannel>
    private let startsContinuation: AsyncStream<FollowedChannel>.Continuation
    /// Servers whose announcements are to be followed, as their first waiting subscription is added.
    private let feeds: AsyncStream<ChannelAnnouncements>
    private let feedsContinuation: AsyncStream<ChannelAnnouncements>.Continuation

    /// Creates a daemon; add subscriptions with ``add(_:)`` (before or while it runs).
    ///
    /// - Parameters:
    ///   - sink: The one egress sink (run and shut down by the daemon).
    ///   - stream: The SSE feed, when the local endpoint is on: every subscription publishes to it, labelled.
    ///   - localConsumer: Receives every non-telemetry line, with its subscription.
    public init(
        configuration: Configuration,
        httpClient: HTTPClient,
        sink: any EgressSink,
        stream: TelemetryStream? = nil,
        logger: Logger,
        localConsumer: @escaping @Sendable (ChannelSubscription, EventDispatcher.LocalEvent) async -> Void = { _, _ in }
    ) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.sink = sink
        self.stream = stream
        self.logger = logger
        self.localConsumer = localConsumer
        self.state = RelayMutex(State(resumePositions: configuration.resumePositions))
        (self.starts, self.startsContinuation) = AsyncStream.makeStream()
        (self.feeds, self.feedsContinuation) = AsyncStream.makeStream()
    }

    /// A daemon following one channel (its records carry no subscription id: a spool of its own).
    public convenience init(
        eventsURL: TrickleChannelURL,
        httpClient: HTTPClient,
        reader configuration: JSONLReader.Configuration = .init(),
        sink: any EgressSink,
        logger: Logger,
        resumingAfter resumePoint: (seq: Int, line: Int)? = nil,
        localConsumer: @escaping @Sendable (EventDispatcher.LocalEvent) async -> Void = { _ in }
    ) {
        self.init(
            configuration: .init(
                reader: configuration,
                resumePositions: resumePoint.map { ["": Spool.ChannelPosition(seq: $0.seq, line: $0.line)] } ?? [:]
            ),
            httpClient: httpClient,
            sink: sink,
            logger: logger,
            localConsumer: { _, event in await localConsumer(event) }
        )
        // A fixed, well-formed id: cannot fail. The empty id keeps the spool's single-channel line format.
        if var subscription = try? ChannelSubscription(eventsURL: eventsURL, start: configuration.subscriber.start) {
            subscription.id = ""
            _ = try? self.add(subscription)
        }
    }

    // MARK: Subscriptions

    /// Starts following `subscription`'s channel (at once if the daemon runs, else when it starts).
    ///
    /// - Throws: ``SubscriptionError``: `.duplicate` when the channel is followed already, `.unavailable` when
    ///   the daemon is stopping, at its limit, or cannot persist an API subscription.
    @discardableResult
    public func add(_ subscription: ChannelSubscription) throws(SubscriptionError) -> SubscriptionSnapshot {
        try self.add(subscription, persists: true)
    }

    /// ``add(_:)``; `persists: false` for a subscription restored from the store (it is recorded there already).
    @discardableResult
    func add(_ subscription: ChannelSubscription, persists: Bool) throws(SubscriptionError) -> SubscriptionSnapshot {
        let result: Result<FollowedChannel, SubscriptionError> = self.state.withLock { state in
            guard !state.isStopping else { return .failure(SubscriptionError(.unavailable, "the client is stopping")) }
            if let existing = state.channels[subscription.id], existing.currentPhase == .running {
                return .failure(
                    SubscriptionError(.duplicate, "the channel \(subscription.eventsURL) is followed already (subscription \(subscription.id))")
                )
            }
            guard state.running < self.configuration.maximumSubscriptions else {
                return .failure(SubscriptionError(.unavailable, "the client follows \(state.running) channels, its limit"))
            }
            var reader = self.configuration.reader
            if self.configuration.followsChannelAnnouncements, reader.subscriber.channelWaitTimeout != nil {
                reader.subscriber.announcements = self.announcements(forServerOf: subscription.eventsURL, in: &state)
            }
            if reader.subscriber.serverReturn == nil {
                reader.subscriber.serverReturn = Self.serverReturnWatch(forServerOf: subscription.eventsURL, in: &state)
            }
            let channel = FollowedChannel(
                subscription: subscription,
                resumingAfter: state.resumePositions.removeValue(forKey: subscription.id),
                reader: reader,
                tracing: self.configuration.tracing,
                httpClient: self.httpClient,
                sink: self.sink,
                stream: self.stream,
                logger: self.logger,
                localConsumer: self.localConsumer
            )
            if let previous = state.channels.updateValue(channel, forKey: subscription.id) {
                Self.retire(previous, into: &state)
                state.order.removeAll { $0 == subscription.id }
            }
            state.order.append(subscription.id)
            state.running += 1
            state.followed += 1
            return .success(channel)
        }
        let channel = try result.get()
        if subscription.origin == .api, persists, let store = self.configuration.store {
            do {
                try store.recordAdded(subscription)
            } catch {
                self.logger.error("cannot persist the API's subscriptions", metadata: ["error": "\(error)"])
                channel.stop()
                throw error
            }
        }
        self.logger.info(
            "following an events channel",
            metadata: ["subscription.id": "\(subscription.id)", "trickle.channel": "\(subscription.eventsURL)", "session.id": "\(subscription.sessionID)"]
        )
        self.startsContinuation.yield(channel)
        return channel.snapshot()
    }

    /// The announcements of `url`'s server, shared by its subscriptions; the first asks for them to be followed.
    private func announcements(forServerOf url: TrickleChannelURL, in state: inout State) -> ChannelAnnouncements {
        let feedURL = url.sibling(named: "_changes").url()
        if let existing = state.announcements[feedURL] { return existing }
        let announcements = ChannelAnnouncements(serverOf: url)
        state.announcements[feedURL] = announcements
        self.feedsContinuation.yield(announcements)
        return announcements
    }

    /// The watch of `url`'s server while it does not answer, shared by its subscriptions (one connect attempt per
    /// interval during an outage, however many channels wait for it).
    private static func serverReturnWatch(forServerOf url: TrickleChannelURL, in state: inout State) -> ServerReturnWatch? {
        guard let origin = HTTPOrigin(url: url.base) else { return nil }
        if let existing = state.serverReturns[origin] { return existing }
        let watch = ServerReturnWatch(origin: origin)
        state.serverReturns[origin] = watch
        return watch
    }

    /// Stops following subscription `id` and removes it from the list (and from the persisted ones).
    ///
    /// - Returns: Its last snapshot.
    /// - Throws: ``SubscriptionError`` `.notFound`.
    @discardableResult
    public func remove(id: String) throws(SubscriptionError) -> SubscriptionSnapshot {
        let removed: FollowedChannel? = self.state.withLock { state in
            guard let channel = state.channels.removeValue(forKey: id) else { return nil }
            state.order.removeAll { $0 == id }
            Self.retire(channel, into: &state)
            return channel
        }
        guard let removed else { throw SubscriptionError(.notFound, "no subscription \(id.prefix(80))") }
        removed.stop()
        if removed.subscription.origin == .api { self.forget(id) }
        self.logger.info("stopped following an events channel", metadata: ["subscription.id": "\(id)"])
        return removed.snapshot()
    }

    /// Makes the configuration file's subscriptions `subscriptions`: follows the new ones, stops those no
    /// longer listed (a reload). Subscriptions from flags and the API are left alone.
    ///
    /// - Returns: The ids added and removed, and the refusals.
    @discardableResult
    public func replaceConfigured(with subscriptions: [ChannelSubscription]) -> (added: [String], removed: [String], refused: [String]) {
        let wanted = Dictionary(subscriptions.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let current: [String] = self.state.withLock { state in
            state.order.filter { id in
                guard let channel = state.channels[id] else { return false }
                return channel.subscription.origin == .config && channel.currentPhase == .running
            }
        }
        var removed: [String] = []
        for id in current where wanted[id] == nil {
            if (try? self.remove(id: id)) != nil { removed.append(id) }
        }
        var added: [String] = []
        var refused: [String] = []
        for subscription in subscriptions where !current.contains(subscription.id) {
            do {
                try self.add(subscription)
                added.append(subscription.id)
            } catch {
                refused.append("\(subscription.id): \(error)")
            }
        }
        return (added, removed, refused)
    }

    /// Every listed subscription, in the order added.
    public var subscriptions: [SubscriptionSnapshot] {
        let channels = self.state.withLock { state in state.order.compactMap { state.channels[$0] } }
        return channels.map { $0.snapshot() }
    }

    /// Says subscription `id`'s channel is expected to exist now (the gateway knows its runner started): while it
    /// waits for the channel, it asks at once and then at short intervals again.
    ///
    /// - Returns: Its snapshot.
    /// - Throws: ``SubscriptionError`` `.notFound`.
    @discardableResult
    public func expect(id: String) throws(SubscriptionError) -> SubscriptionSnapshot {
        guard let channel = self.state.withLock({ $0.channels[id] }) else { throw SubscriptionError(.notFound, "no subscription \(id.prefix(80))") }
        channel.expectChannel()
        return channel.snapshot()
    }

    /// One page of the list: up to `limit` subscriptions after the one with id `after` (from the first without),
    /// and how many are listed in all. An unknown `after` gives an empty page.
    public func subscriptions(after: String?, limit: Int) -> (page: [SubscriptionSnapshot], total: Int) {
        let (channels, total): ([FollowedChannel], Int) = self.state.withLock { state in
            var start = 0
            if let after {
                guard let position = state.order.firstIndex(of: after) else { return ([], state.order.count) }
                start = position + 1
            }
            let end = min(state.order.count, start + max(limit, 0))
            return (state.order[start..<end].compactMap { state.channels[$0] }, state.order.count)
        }
        return (channels.map { $0.snapshot() }, total)
    }

    /// Subscriptions followed in this run (listed or aged out of the list), and those whose channel ended.
    public var counts: (followed: Int, ended: Int) {
        self.state.withLock { ($0.followed, $0.ended) }
    }

    /// One subscription.
    public func subscription(id: String) -> SubscriptionSnapshot? {
        self.state.withLock { $0.channels[id] }?.snapshot()
    }

    /// Subscriptions per state (`waiting`, `following`, `finished`…).
    public var subscriptionStates: [String: Int] {
        let channels = self.state.withLock { Array($0.channels.values) }
        var states: [String: Int] = [:]
        for channel in channels { states[channel.stateName, default: 0] += 1 }
        return states
    }

    /// The counters of every subscription, past ones included, added up.
    public var stats: EventDispatcher.Counters {
        let (channels, retired) = self.state.withLock { state in (Array(state.channels.values), state.retired) }
        var total = retired
        for channel in channels { total.add(channel.dispatcher.stats) }
        return total
    }

    /// The subscribers' counters, past ones included, added up.
    public var subscriberStats: TrickleSubscriber.Stats {
        let (channels, retired) = self.state.withLock { state in (Array(state.channels.values), state.retiredSubscriber) }
        var total = retired
        for channel in channels { total.add(channel.subscriberStats) }
        return total
    }

    /// How the last channel to end ended; `nil` when the daemon was stopped first (or none ended).
    public var endOfStream: TrickleSubscriber.EndOfStream? { self.state.withLock { $0.lastEnd ?? nil } }

    // MARK: Running

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.sink.run() }
            let stopped = await withGracefulShutdownHandler {
                await self.followAll()
            } onGracefulShutdown: {
                self.stopAll()
            }
            // When the channels ended, deliver what is buffered; on graceful shutdown do not wait for a remote
            // side: a spooled sink keeps the rest for the next start.
            if !stopped { try? await cancelWhenGracefulShutdown { try await self.sink.forceFlush() } }
            await self.sink.shutdown()
            try await group.waitForAll()
        }
    }

    /// Follows every subscription, added before or while running, until the daemon stops (`true`) or — when it
    /// does not run until stopped — the last subscription ends (`false`).
    private func followAll() async -> Bool {
        let isIdle = self.state.withLock { $0.running == 0 }
        if isIdle, !self.configuration.runsUntilStopped { self.startsContinuation.finish() }
        await withDiscardingTaskGroup { feeds in
            // The servers' announcements are followed while any channel is: they end with the last one.
            feeds.addTask {
                await withDiscardingTaskGroup { group in
                    for await announcements in self.feeds {
                        group.addTask { await announcements.follow(httpClient: self.httpClient, logger: self.logger) }
                    }
                }
            }
            await withDiscardingTaskGroup { group in
                for await channel in self.starts {
                    // A channel's reads, framing, parsing and dispatch run isolated to one event loop (see EventLoopActor).
                    let loop = EventLoopActor(self.httpClient.eventLoopGroup.next())
                    group.addTask { await loop.run { await self.follow(channel) } }
                }
            }
            feeds.cancelAll()
        }
        return self.state.withLock { $0.isStopping }
    }

    nonisolated(nonsending) private func follow(_ channel: FollowedChannel) async {
        let phase = await channel.run()
        self.ended(channel, phase)
    }

    /// A followed channel's run ended: logged and counted. (Synchronous and never inlined: the follow task's
    /// frame stays small — 10,000 channels keep theirs.)
    @inline(never)
    private func ended(_ channel: FollowedChannel, _ phase: FollowedChannel.Phase) {
        switch phase {
        case .finished(let end):
            self.logger.info("events channel ended", metadata: ["subscription.id": "\(channel.subscription.id)", "trickle.end": "\(end)"])
        case .failed(let reason):
            self.logger.error("following an events channel failed", metadata: ["subscription.id": "\(channel.subscription.id)", "error": "\(reason)"])
        case .stopped, .running:
            break
        }
        let isLast: Bool = self.state.withLock { state in
            state.running -= 1
            if case .finished(let end) = phase {
                state.lastEnd = .some(end)
                state.ended += 1
            }
            if case .stopped = phase, state.lastEnd == nil { state.lastEnd = .some(nil) }
            self.trimHistory(&state)
            return state.running == 0 && !self.configuration.runsUntilStopped
        }
        if channel.subscription.origin == .api, case .finished = phase {
            // A finished channel is not followed again after a restart.
            self.forget(channel.subscription.id)
        }
        if isLast { self.startsContinuation.finish() }
    }

    private func stopAll() {
        let channels = self.state.withLock { state in
            state.isStopping = true
            return Array(state.channels.values)
        }
        self.startsContinuation.finish()
        for channel in channels { channel.stop() }
    }

    /// Drops the oldest finished subscriptions beyond the history size (their counts go to the totals).
    ///
    /// Amortized: the list is scanned once a quarter of the history (at least 16) has piled up beyond it, and not
    /// at all while the daemon stops (every channel ends then: trimming each time would be quadratic, and the
    /// closing summary counts them without the list).
    private func trimHistory(_ state: inout State) {
        let history = self.configuration.finishedHistory
        guard !state.isStopping, state.order.count - state.running > history + max(history / 4, 16) else { return }
        let finished = state.order.filter { state.channels[$0]?.currentPhase != .running }
        guard finished.count > history else { return }
        let dropped = Set(finished.prefix(finished.count - history))
        for id in dropped {
            if let channel = state.channels.removeValue(forKey: id) { Self.retire(channel, into: &state) }
        }
        state.order.removeAll { dropped.contains($0) }
    }

    private static func retire(_ channel: FollowedChannel, into state: inout State) {
        state.retired.add(channel.dispatcher.stats)
        state.retiredSubscriber.add(channel.subscriberStats)
    }

    /// Removes `id` from the stored subscriptions (a failure is logged: the subscription would come back after a
    /// restart, and end or be removed again).
    private func forget(_ id: String) {
        do {
            try self.configuration.store?.recordRemoved(id: id)
        } catch {
            self.logger.error("cannot persist the API's subscriptions", metadata: ["error": "\(error)"])
        }
    }
}

extension TrickleSubscriber.Stats {
    mutating func add(_ other: Self) {
        self.attempts += other.attempts
        self.retries += other.retries
        self.segments += other.segments
        self.bytes += other.bytes
        self.gaps += other.gaps
        self.resets += other.resets
        self.stalls += other.stalls
        self.overLimitSegments += other.overLimitSegments
        self.protocolErrors += other.protocolErrors
        self.reconnects += other.reconnects
        self.reconnectGraceExpired = self.reconnectGraceExpired || other.reconnectGraceExpired
    }
}
