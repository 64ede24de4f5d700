import AsyncHTTPClient
import NIOCore
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import RunnerRelay

/// A session's teardown ends with the channel's DELETE answered, however the flush deadline falls: readers must
/// see end of stream, not wait at the live edge for a segment that never comes.
@Suite("SessionRelay closes its channel before it returns", .timeLimit(.minutes(1)))
struct SessionRelayCloseTests {
    @Test("flush done quickly, close slower than the flush deadline (a linger): the DELETE still goes out, the reader ends")
    func closeOutlastsFlushDeadline() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "linger-events")
            let url = try TrickleChannelURL("\(base)/linger-events")
            var writer = JSONLWriter.Configuration(segmentWindow: .seconds(60))
            // The close lingers three times as long as the flush deadline: the deadline passes while it lingers.
            writer.publisher.lingerBeforeDelete = .milliseconds(900)
            let relay = SessionRelay(
                configuration: .init(
                    eventsURL: url,
                    sink: .init(identity: SessionIdentity(sessionID: "linger"), isTelemetryEnabled: true),
                    writer: writer,
                    flushTimeout: .milliseconds(300)
                ),
                httpClient: client,
                logger: quietLogger
            )
            let reader = JSONLReader(url: url, httpClient: client, configuration: .init(subscriber: .init(start: .seq(0))), logger: quietLogger)
            let lines = Recorder<String>()
            let ended = Recorder<TrickleSubscriber.EndOfStream>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    let end = try await reader.run { item in if case .line(let line) = item { lines.append(String(buffer: line.bytes)) } }
                    ended.append(end)
                }
                group.addTask { try await relay.run() }
                relay.sink.emit(ByteBuffer(string: #"{"type":"metric","n":1}"#))
                try await lines.wait("the event") { $0.contains { $0.contains(#""n":1"#) } }
                relay.finish()
                // Without the fix the flush deadline ended the session and cancelled the DELETE mid-linger: the
                // reader then waited forever. The reader must see the channel close.
                try await ended.wait(timeout: .seconds(20), "the reader to see the channel closed") { !$0.isEmpty }
                try await group.waitForAll()
            }
            #expect(ended.values == [.closed])
            #expect(relay.summary.flushedInTime)
        }
    }
}
