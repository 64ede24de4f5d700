import AsyncHTTPClient
import HTTPTypes
import NIOCore
import Synchronization
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import RunnerRelay

/// Issue #9 item 6: `relayed` means accepted by the server; events in uploads that failed are `lost`, counted
/// and reported downstream, never counted as relayed.
@Suite("TrickleEventsSink counts what the server accepted", .timeLimit(.minutes(1)))
struct RelayedCountsTests {
    @Test("a server that fails every segment after reading it: relayed 0, every written event lost and reported")
    func failedUploads() async throws {
        let server = ScriptedHTTPServer { request, _ in
            // Reads each segment to its end, then answers 500: the upload failed after its bytes were sent.
            request.path.hasSuffix("/next") ? .init(.ok, headers: [TrickleHeaders.latest: "0"], body: "0") : .init(.internalServerError)
        }
        let relay = try await relay20Events(
            to: server,
            segmentWindow: .milliseconds(50),
            flushTimeout: .seconds(3),
            until: "every event written into a segment (whose uploads keep failing)"
        ) { $0.written >= 20 }
        let stats = relay.summary.sink
        #expect(stats.relayed == 0, "nothing was accepted, nothing may count as relayed")
        // The publisher never gives up on a failing server (an outage of any length is ridden out); the bounded
        // close cuts the uploads at teardown, and every event they held is counted lost. None goes uncounted.
        #expect(stats.lost == stats.written && stats.written >= 20, "\(stats)")
        // The control events went into the same failed segments: lost, counted, never "relayed".
        #expect(stats.controlRelayed == 0 && stats.controlLost == 5 && stats.controlLostInSegments == 5, "\(stats)")
        expectEveryEventAccountedFor(stats)
        #expect(relay.writer.publisher.stats.retries > 0)
    }

    @Test("a segment whose upload breaks after its bytes went out is sent again from its first byte: relayed, not lost")
    func resentAfterFailures() async throws {
        let segmentZeroPosts = RelayMutex(0)
        let server = ScriptedHTTPServer { request, _ in
            if request.path.hasSuffix("/next") { return .init(.ok, headers: [TrickleHeaders.latest: "0"], body: "0") }
            guard request.path == "/events/0" else { return .init(.ok) }
            // The first three POSTs of segment 0 are read to their end and then refused with 500.
            let attempt = segmentZeroPosts.withLock { count in
                count += 1
                return count
            }
            return attempt <= 3 ? .init(.internalServerError) : .init(.ok, headers: [TrickleHeaders.seq: "0"])
        }
        // The flush deadline covers the re-sends, however slow the machine.
        let relay = try await relay20Events(to: server, segmentWindow: .seconds(60), flushTimeout: .seconds(60), until: "the events to be written") {
            $0.written == 20
        }
        let stats = relay.summary.sink
        #expect(stats.relayed == 20 && stats.lost == 0, "\(stats)")
        #expect(stats.controlRelayed == 5 && stats.controlLost == 0, "\(stats)")
        expectEveryEventAccountedFor(stats)
        #expect(relay.writer.publisher.stats.resends == 3)
        let posts = server.requests.filter { $0.method == .post && $0.path == "/events/0" }
        #expect(posts.count == 4)
        // Every attempt carried the whole segment from its first byte.
        #expect(Set(posts.map(\.body)).count == 1 && posts[0].body.contains(#""n":0"#) && posts[0].body.contains(#""n":19"#))
    }

    @Test("against a healthy server relayed = written once the session ended, and nothing is lost")
    func healthy() async throws {
        let (summary, lines) = try await withRelay(sink: { $0.isTelemetryEnabled = true }) { relay, _, seen in
            for n in 0..<50 { relay.sink.emit(ByteBuffer(string: #"{"type":"metric","n":\#(n)}"#)) }
            try await seen.wait("50 lines") { $0.count >= 50 }
        }
        #expect(summary.sink.written == 50 && summary.sink.relayed == 50 && summary.sink.lost == 0)
        expectEveryEventAccountedFor(summary.sink)
        #expect(lines.count == 50)
    }

}

/// Runs a session relay against `server` (quick retries, no channel DELETE): emits 20 numbered events, waits for
/// `condition`, finishes the relay, and returns it.
private func relay20Events(
    to server: ScriptedHTTPServer,
    segmentWindow: Duration,
    flushTimeout: Duration,
    until what: String,
    _ condition: @escaping @Sendable (TrickleEventsSink.Stats) -> Bool
) async throws -> SessionRelay {
    try await server.run { base in
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            var writer = JSONLWriter.Configuration(segmentWindow: segmentWindow)
            writer.publisher.retryBackoff = Backoff(initial: .milliseconds(5), maximum: .milliseconds(10))
            writer.publisher.deletesChannelOnClose = false
            let relay = SessionRelay(
                configuration: .init(
                    eventsURL: try TrickleChannelURL("\(base)/events"),
                    sink: .init(identity: SessionIdentity(sessionID: "s"), isTelemetryEnabled: true),
                    writer: writer,
                    flushTimeout: flushTimeout
                ),
                httpClient: client,
                logger: quietLogger
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await relay.run() }
                for n in 0..<5 { await relay.sink.sendControl(ByteBuffer(string: #"{"type":"runner_ready","n":\#(n)}"#)) }
                for n in 0..<20 { relay.sink.emit(ByteBuffer(string: #"{"type":"metric","n":\#(n)}"#)) }
                try await waitUntil(what) { condition(relay.sink.stats) }
                relay.finish()
                try await group.waitForAll()
            }
            return relay
        }
    }
}
