import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import ClientEgress

/// `FollowedChannel` directly (issue #24): one subscription against the embedded trickle server over loopback —
/// what it dispatches, how it ends, and what its snapshot (the control API's view) says at each step.
@Suite("FollowedChannel: one subscription, run to its end", .timeLimit(.minutes(1)))
struct FollowedChannelTests {
    static func envelope(_ n: Int) -> String {
        #"{"type":"telemetry","event":{"id":"e\#(n)","type":"stream_trace","timestamp":"1700000000000","data":{"type":"metric","n":\#(n)}}}"#
    }

    func follow(
        _ base: String,
        _ client: HTTPClient,
        channel: String,
        start: TrickleSubscriber.StartPosition = .seq(0),
        resumingAfter position: Spool.ChannelPosition? = nil,
        sink: RecordingSink,
        local: Recorder<String> = Recorder()
    ) throws -> FollowedChannel {
        FollowedChannel(
            subscription: try ChannelSubscription(eventsURL: TrickleChannelURL("\(base)/\(channel)"), sessionID: "sess", start: start, origin: .api),
            resumingAfter: position,
            reader: .init(subscriber: .init(reconnectGrace: .zero)),
            httpClient: client,
            sink: sink,
            stream: nil,
            logger: quietLogger
        ) { _, event in local.append(String(buffer: event.line)) }
    }

    @Test("waiting, then following, then finished when the channel closes: telemetry to the sink byte for byte, the rest local")
    func lifecycle() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            #expect(try await client.send(.POST, "\(base)/ch").status == 200)
            let sink = RecordingSink()
            let local = Recorder<String>()
            let followed = try self.follow(base, client, channel: "ch", sink: sink, local: local)
            #expect(followed.snapshot().state == "waiting")
            try await withThrowingTaskGroup(of: FollowedChannel.Phase.self) { group in
                group.addTask { await followed.run() }
                let segment0 = (0..<3).map(Self.envelope).joined(separator: "\n") + "\n" + #"{"type":"runner_ready"}"# + "\n" + "not json\n"
                #expect(try await client.send(.POST, "\(base)/ch/0", body: segment0).status == 200)
                try await waitUntil("the first segment dispatched") { sink.envelopes.count == 3 && local.values.count == 1 }
                #expect(followed.snapshot().state == "following")
                #expect(try await client.send(.POST, "\(base)/ch/1", body: Self.envelope(3) + "\n").status == 200)
                try await waitUntil("the second segment") { sink.envelopes.count == 4 }
                #expect(try await client.send(.DELETE, "\(base)/ch").status == 200)
                let phase = try await group.next()
                #expect(phase == .finished(.closed) || phase == .finished(.notFound))
            }
            let snapshot = followed.snapshot()
            #expect(snapshot.state == "finished" && snapshot.events == 4 && snapshot.malformed == 1 && snapshot.segments == 2, "\(snapshot)")
            #expect(snapshot.lastProblem?.contains("malformed") == true, "\(snapshot)")
            #expect(sink.envelopes == (0..<4).map { #"{"id":"e\#($0)","type":"stream_trace","timestamp":"1700000000000","data":{"type":"metric","n":\#($0)}}"# })
            #expect(local.values == [#"{"type":"runner_ready"}"#])
        }
    }

    @Test("a channel that does not exist: finished, not_found, nothing dispatched")
    func missing() async throws {
        try await withTrickleServer(.init(autocreate: false)) { (_, base, client) async throws in
            let sink = RecordingSink()
            let followed = try self.follow(base, client, channel: "nowhere", sink: sink)
            #expect(await followed.run() == .finished(.notFound))
            #expect(followed.snapshot().end == "not_found" && sink.envelopes.isEmpty)
        }
    }

    @Test("stop() ends a channel waiting at its live edge: stopped, what was dispatched stays")
    func stopped() async throws {
        try await withTrickleServer { (_, base, client) async throws in
            #expect(try await client.send(.POST, "\(base)/live").status == 200)
            #expect(try await client.send(.POST, "\(base)/live/0", body: Self.envelope(0) + "\n").status == 200)
            let sink = RecordingSink()
            let followed = try self.follow(base, client, channel: "live", sink: sink)
            try await withThrowingTaskGroup(of: FollowedChannel.Phase.self) { group in
                group.addTask { await followed.run() }
                try await waitUntil("the event dispatched") { sink.envelopes.count == 1 }
                followed.stop()
                #expect(try await group.next() == .stopped)
            }
            #expect(followed.snapshot().state == "stopped" && followed.snapshot().events == 1)
        }
    }

    @Test("resuming from a spool position skips the lines already spooled in that segment, and counts them")
    func resume() async throws {
        try await withTrickleServer { (_, base, client) async throws in
            #expect(try await client.send(.POST, "\(base)/again").status == 200)
            let segment = (0..<5).map(Self.envelope).joined(separator: "\n") + "\n"
            #expect(try await client.send(.POST, "\(base)/again/0", body: segment).status == 200)
            #expect(try await client.send(.DELETE, "\(base)/again").status == 200)
            let sink = RecordingSink()
            let followed = try self.follow(base, client, channel: "again", resumingAfter: Spool.ChannelPosition(seq: 0, line: 3), sink: sink)
            _ = await followed.run()
            #expect(sink.envelopes.count == 2 && sink.envelopes.first?.contains(#""n":3"#) == true, "\(sink.envelopes)")
            #expect(followed.snapshot().skippedOnResume == 3)
        }
    }
}
