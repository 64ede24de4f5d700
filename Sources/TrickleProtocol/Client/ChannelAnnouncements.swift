public import AsyncHTTPClient
public import Logging
import NIOCore
import Synchronization
public import TrickleRelaySupport

/// One server's `_changes` feed, followed for the subscribers of that server that wait for their channel to be
/// created (`channelWaitTimeout`): when the feed announces a channel (`{"added":[…]}`), its waiting subscribers
/// ask at once, as ``TrickleSubscriber/expectChannel()`` makes them. While the feed is followed, waiting
/// subscribers ask rarely on their own (``TrickleSubscriber/Configuration/channelWaitMaximumDelayWhenAnnounced``):
/// thousands of sessions registered before their runners start cost one long-poll instead of an ask each.
///
/// A server without the feed (go-livepeer; `404`) is asked again every ``retryInterval``; its subscribers keep
/// their usual back-off. What may have been missed — the feed's segments lost, `{"lost":N}`, the feed coming back
/// after an outage — makes every waiting subscriber ask once.
public final class ChannelAnnouncements: Sendable {
    /// The feed: the `_changes` channel beside the subscribed channels.
    public let feedURL: TrickleChannelURL
    /// How long to wait before asking again for a feed that is not there (or ended). Default 10 min.
    public let retryInterval: Duration
    private let clock: RelayClock

    private struct State {
        var waiting: [String: [ObjectIdentifier: GenerationSignal]] = [:]
        var isFollowing = false
    }

    private let state = RelayMutex(State())
    private let announcedCount = Atomic<Int>(0)

    /// Announcements for the server of `channel` (its feed is the sibling channel `_changes`).
    public init(serverOf channel: TrickleChannelURL, retryInterval: Duration = .seconds(600), clock: RelayClock = .continuous) {
        self.feedURL = channel.sibling(named: "_changes")
        self.retryInterval = retryInterval
        self.clock = clock
    }

    /// Whether the feed is followed now (the server has one and it answers).
    public var isFollowing: Bool { self.state.withLock { $0.isFollowing } }

    /// Subscribers told to ask by the feed so far.
    public var announced: Int { self.announcedCount.load(ordering: .relaxed) }

    /// Subscribers waiting now.
    public var waitingCount: Int { self.state.withLock { $0.waiting.values.reduce(0) { $0 + $1.count } } }

    /// A subscriber waits for channel `name`: `signal` is advanced when the feed announces it.
    func register(channel name: String, _ signal: GenerationSignal) {
        self.state.withLock { $0.waiting[name, default: [:]][ObjectIdentifier(signal)] = signal }
    }

    /// The subscriber stopped waiting (its channel answered, or it ended).
    func unregister(channel name: String, _ signal: GenerationSignal) {
        self.state.withLock { state in
            state.waiting[name]?[ObjectIdentifier(signal)] = nil
            if state.waiting[name]?.isEmpty == true { state.waiting[name] = nil }
        }
    }

    /// Channels `names` exist now: their waiting subscribers ask.
    func announce(_ names: some Sequence<String>) {
        let signals: [GenerationSignal] = self.state.withLock { state in
            names.flatMap { state.waiting[$0].map { Array($0.values) } ?? [] }
        }
        self.wake(signals)
    }

    /// Something may have been missed: every waiting subscriber asks once.
    func announceAll() {
        self.wake(self.state.withLock { $0.waiting.values.flatMap(\.values) })
    }

    private func wake(_ signals: [GenerationSignal]) {
        for signal in signals { signal.advance() }
        self.announcedCount.add(signals.count, ordering: .relaxed)
    }

    private func setFollowing(_ following: Bool) {
        self.state.withLock { $0.isFollowing = following }
    }

    /// Follows the feed until cancelled: from the seq `/next` names (nothing announced after the ask is missed),
    /// announcing what it says; every waiting subscriber asks once when the feed is found (what was created
    /// before was announced to nobody). When the feed is missing or ends, it is asked for again after
    /// ``retryInterval``.
    public func follow(httpClient: HTTPClient, logger: Logger) async {
        var logger = logger
        logger[metadataKey: "trickle.feed"] = "\(self.feedURL)"
        while !Task.isCancelled {
            if case .value(let next) = await ChannelNextWrite.fetch(self.feedURL, httpClient: httpClient, logger: logger) {
                self.setFollowing(true)
                // Channels created before `next` (while the feed was not followed yet, or was away) were announced
                // to nobody: whoever waits now asks once.
                self.announceAll()
                logger.debug("following the server's channel announcements")
                await self.read(from: next, httpClient: httpClient, logger: logger)
                self.setFollowing(false)
            }
            do { try await self.clock.sleep(for: self.retryInterval) } catch { return }
        }
    }

    private func read(from seq: Int, httpClient: HTTPClient, logger: Logger) async {
        var subscriber = TrickleSubscriber.Configuration(start: .seq(seq), maximumSegmentBytes: 4 * 1024 * 1024, reconnectGrace: .seconds(30))
        subscriber.clock = self.clock
        let reader = JSONLReader(url: self.feedURL, httpClient: httpClient, configuration: .init(maximumSegmentBytes: 4 * 1024 * 1024, subscriber: subscriber), logger: logger)
        let reconnects = Atomic<Int>(0)
        _ = try? await reader.runBatches { items in
            // Back after the server was away: what it created meanwhile may be in segments it no longer has.
            let now = reader.subscriber.stats.reconnects
            if reconnects.exchange(now, ordering: .relaxed) != now { self.announceAll() }
            for item in items {
                switch item {
                case .line(let line):
                    switch ChannelChange(line.bytes.readableBytesView) {
                    case .added(let names): self.announce(names)
                    case .lost: self.announceAll()
                    case .removed, .other: break
                    }
                case .gap, .diagnostic:
                    self.announceAll()
                }
            }
        }
    }
}

/// One line of a `_changes` feed.
enum ChannelChange: Equatable {
    case added([String])
    case removed([String])
    /// Changes the server could not announce: anything may have been created.
    case lost
    /// Anything else (ignored).
    case other

    init(_ bytes: some Collection<UInt8>) {
        guard let object = try? JSONValue.parse(bytes).objectValue else {
            self = .other
            return
        }
        func names(_ key: String) -> [String]? {
            guard case .array(let values)? = object[key] else { return nil }
            return values.compactMap(\.stringValue)
        }
        if let added = names("added") {
            self = .added(added)
        } else if let removed = names("removed") {
            self = .removed(removed)
        } else if object["lost"] != nil {
            self = .lost
        } else {
            self = .other
        }
    }
}
