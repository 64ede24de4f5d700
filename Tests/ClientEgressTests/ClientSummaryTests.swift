import Testing
import TrickleTestSupport
import TrickleProtocol
@testable import ClientEgress

/// The client's closing line counts every channel of the run, not the list (which keeps the last 1,000 that are
/// not running).
@Suite("The client's closing summary")
struct ClientSummaryTests {
    @Test("2,000 channels followed, 1,500 ended, none listed any more: the line says 1500 of 2000")
    func countsEveryChannel() {
        let summary = ClientApplication.Summary(
            end: .closed,
            counters: EventDispatcher.Counters(),
            spool: nil,
            reporter: nil,
            kafka: nil,
            subscriptions: [],
            channelsFollowed: 2_000,
            channelsEnded: 1_500
        )
        #expect(summary.text(sink: .null).contains("client ended (1500 of 2000 channels ended)"), "\(summary.text(sink: .null))")
    }
}

/// The list keeps a bounded history of ended subscriptions; the counts keep them all.
@Suite("ClientDaemon's history of ended subscriptions", .timeLimit(.minutes(1)))
struct ClientDaemonHistoryTests {
    @Test("40 channels that end, a history of 2: the list is trimmed in batches (never past history + 16), the counts say 40 of 40")
    func history() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            let names = (0..<40).map { "history-\($0)" }
            for name in names { server.createChannel(named: name) }
            let daemon = ClientDaemon(
                configuration: .init(reader: .init(subscriber: .init(start: .seq(0))), runsUntilStopped: true, finishedHistory: 2),
                httpClient: client,
                sink: NullSink(),
                logger: quietLogger
            )
            for name in names {
                try daemon.add(try ChannelSubscription(eventsURL: TrickleChannelURL("\(base)/\(name)"), sessionID: name, start: .seq(0), origin: .api))
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await daemon.run() }
                try await waitUntil("every subscription waiting at its channel") { daemon.subscriptions.count == 40 && server.channelCount == 40 }
                for name in names { server.deleteChannel(named: name) }
                try await waitUntil("every channel ended") { daemon.counts.ended == 40 }
                #expect(daemon.subscriptions.count <= 2 + 16, "\(daemon.subscriptions.count) listed")
                #expect(daemon.counts.followed == 40)
                group.cancelAll()
            }
        }
    }
}
