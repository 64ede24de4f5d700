import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import ClientEgress

/// A daemon whose subscriptions wait for their channels follows each server's announcements once (issue #27).
@Suite("ClientDaemon: waiting subscriptions follow their server's announcements", .timeLimit(.minutes(1)))
struct ClientDaemonAnnouncementsTests {
    @Test("50 subscriptions waiting with asks minutes apart: one feed reader for the server, and each session's first event delivered moments after it starts")
    func waitingFleet() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            var reader = JSONLReader.Configuration(subscriber: .init(start: .latest, aheadRetryDelay: .seconds(120), channelWaitTimeout: .seconds(600)))
            reader.subscriber.channelWaitMaximumDelay = .seconds(120)
            let sink = RecordingSink()
            let daemon = ClientDaemon(configuration: .init(reader: reader, runsUntilStopped: true), httpClient: client, sink: sink, logger: quietLogger)
            let names = (0..<50).map { "waiting-\($0)" }
            for name in names {
                try daemon.add(try ChannelSubscription(eventsURL: TrickleChannelURL("\(base)/\(name)"), sessionID: name, origin: .api))
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await daemon.run() }
                try await waitUntil("the server's announcements followed by one reader") { server.activeReaders(ofChannel: "_changes") == 1 }
                for (n, name) in names.enumerated() {
                    let line = #"{"type":"telemetry","event":{"id":"e\#(n)","type":"stream_trace","data":{"type":"started"}}}"#
                    #expect(try await client.send(.POST, "\(base)/\(name)/0", body: line + "\n").status == 200)
                }
                try await waitUntil(timeout: .seconds(15), "every session's first event, long before the subscriptions' own next asks") {
                    sink.envelopes.count == 50
                }
                #expect(server.activeReaders(ofChannel: "_changes") == 1)
                group.cancelAll()
            }
        }
    }
}
