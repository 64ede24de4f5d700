import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Testing
@testable import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Subscribers waiting for their channel follow the server's `_changes` feed (issue #27: a fleet waiting for its
/// sessions costs one long-poll per server, and a session's first segment is read moments after it starts).
@Suite("Channel announcements for waiting subscribers", .timeLimit(.minutes(1)))
struct ChannelAnnouncementsTests {
    /// A subscriber whose own asks are a minute or more apart (so only the feed can make it read in time).
    static func patientSubscriber(_ url: String, _ client: HTTPClient, _ announcements: ChannelAnnouncements?, logs: CapturedLogs) throws -> TrickleSubscriber {
        var configuration = TrickleSubscriber.Configuration(start: .latest, aheadRetryDelay: .seconds(120), channelWaitTimeout: .seconds(600))
        configuration.channelWaitMaximumDelay = .seconds(120)
        configuration.announcements = announcements
        return TrickleSubscriber(url: try TrickleChannelURL(url), httpClient: client, configuration: configuration, logger: logs.logger())
    }

    /// Runs the feed follower, then (once `followerReady` returns) the subscriber (collecting the bytes it reads)
    /// while `body` runs.
    static func running(
        _ announcements: ChannelAnnouncements,
        _ subscriber: TrickleSubscriber,
        _ client: HTTPClient,
        followerReady: () async throws -> Void = {},
        _ body: (Recorder<String>) async throws -> Void
    ) async throws {
        let seen = Recorder<String>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await announcements.follow(httpClient: client, logger: quietLogger) }
            try await followerReady()
            group.addTask {
                _ = try await subscriber.run { event in
                    if case .bytes(let chunk, _) = event { seen.append(String(buffer: chunk)) }
                }
            }
            try await body(seen)
            group.cancelAll()
        }
    }

    @Test("a subscriber asking minutes apart reads its channel's first segment moments after the server announces it")
    func announcedChannelIsReadAtOnce() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            let announcements = ChannelAnnouncements(serverOf: try TrickleChannelURL("\(base)/session-1"))
            #expect(announcements.feedURL.url() == "\(base)/_changes")
            let logs = CapturedLogs()
            let subscriber = try Self.patientSubscriber("\(base)/session-1", client, announcements, logs: logs)
            // The feed is followed first (when it is found, whoever waits then asks once: nobody yet).
            let feedFollowed: () async throws -> Void = {
                try await waitUntil("the feed to be followed") { announcements.isFollowing && server.activeReaders(ofChannel: "_changes") == 1 }
            }
            try await Self.running(announcements, subscriber, client, followerReady: feedFollowed) { seen in
                try await waitUntil("the subscriber's first ask answered 404") {
                    logs.lines.contains { $0.contains("waiting for the events channel to be created") }
                }
                #expect(announcements.waitingCount == 1)
                let before = announcements.announced
                // Another channel wakes nobody.
                server.createChannel(named: "session-2")
                #expect(try await client.send(.POST, "\(base)/session-1/0", body: "first\n").status == 200)
                try await seen.wait(timeout: .seconds(10), "the first segment, long before the subscriber's own next ask") { $0.joined() == "first\n" }
                #expect(announcements.announced - before == 1, "announced \(announcements.announced) before \(before) attempts \(subscriber.stats.attempts) logs \(logs.lines)")
                // Once its first segment is read, the subscriber leaves the waiting list.
                try await waitUntil("the subscriber to leave the waiting list") { announcements.waitingCount == 0 }
            }
        }
    }

    @Test("a server without the feed: it is asked rarely, and waiting subscribers keep their own back-off")
    func serverWithoutFeed() async throws {
        var configuration = TrickleServer.Configuration()
        configuration.announcesChannels = false
        try await withTrickleServer(configuration) { (server, base, client) async throws in
            let announcements = ChannelAnnouncements(serverOf: try TrickleChannelURL("\(base)/ch"), retryInterval: .seconds(600))
            var subscriberConfiguration = TrickleSubscriber.Configuration(start: .seq(0), aheadRetryDelay: .milliseconds(20), channelWaitTimeout: .seconds(30))
            subscriberConfiguration.channelWaitMaximumDelay = .milliseconds(100)
            subscriberConfiguration.announcements = announcements
            let subscriber = TrickleSubscriber(url: try TrickleChannelURL("\(base)/ch"), httpClient: client, configuration: subscriberConfiguration, logger: quietLogger)
            try await Self.running(announcements, subscriber, client) { seen in
                try await waitUntil("the subscriber to wait") { announcements.waitingCount == 1 }
                #expect(!announcements.isFollowing)
                #expect(try await client.send(.POST, "\(base)/ch/0", body: "found by asking\n").status == 200)
                try await seen.wait("the segment") { $0.joined() == "found by asking\n" }
                #expect(announcements.announced == 0)
            }
        }
    }

    @Test("feed lines: added and removed names, lost, and anything else ignored (hostile lines never trap)")
    func feedLines() {
        #expect(ChannelChange(Array(#"{"added":["a","b"]}"#.utf8)) == .added(["a", "b"]))
        #expect(ChannelChange(Array(#"{"removed":["a"]}"#.utf8)) == .removed(["a"]))
        #expect(ChannelChange(Array(#"{"lost":12}"#.utf8)) == .lost)
        #expect(ChannelChange(Array(#"{"added":["a",1,null,{"x":"y"}]}"#.utf8)) == .added(["a"]))
        #expect(ChannelChange(Array(#"{"added":"a"}"#.utf8)) == .other)
        #expect(ChannelChange(Array(#"["added"]"#.utf8)) == .other)
        #expect(ChannelChange(Array("not json".utf8)) == .other)
        #expect(ChannelChange(Array(String(repeating: "[", count: 100_000).utf8)) == .other)
        #expect(ChannelChange([]) == .other)
    }

    @Test("announce wakes only the subscribers waiting for those names; announceAll wakes every one")
    func wakesTheRightSubscribers() throws {
        let announcements = ChannelAnnouncements(serverOf: try TrickleChannelURL("http://127.0.0.1:1/x"))
        let a = GenerationSignal()
        let b = GenerationSignal()
        announcements.register(channel: "a", a)
        announcements.register(channel: "b", b)
        announcements.announce(["a", "c"])
        #expect(a.generation == 1 && b.generation == 0)
        announcements.announceAll()
        #expect(a.generation == 2 && b.generation == 1)
        announcements.unregister(channel: "a", a)
        announcements.announce(["a"])
        #expect(a.generation == 2 && announcements.waitingCount == 1)
    }
}
