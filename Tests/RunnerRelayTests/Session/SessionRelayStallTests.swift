import AsyncHTTPClient
import NIOCore
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import RunnerRelay

/// Issue #22: a trickle server that stops reading must not hold a session (and with it SIGTERM) forever.
@Suite("SessionRelay against a server that never reads", .timeLimit(.minutes(1)))
struct SessionRelayStallTests {
    @Test("teardown ends within the flush deadline plus the close bound; every emitted event is in exactly one counter")
    func stalledServer() async throws {
        let server = StalledServer()
        try await server.run { base in
            try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
                let relay = SessionRelay(
                    configuration: .init(
                        eventsURL: try TrickleChannelURL("\(base)/stalled-events"),
                        sink: .init(identity: SessionIdentity(sessionID: "stalled"), isTelemetryEnabled: true),
                        flushTimeout: .seconds(1)
                    ),
                    httpClient: client,
                    logger: quietLogger
                )
                let started = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await relay.run() }
                    for n in 0..<3 { await relay.sink.sendControl(ByteBuffer(string: #"{"type":"runner_ready","n":\#(n)}"#)) }
                    for n in 0..<50 { relay.sink.emit(ByteBuffer(string: #"{"type":"metric","n":\#(n)}"#)) }
                    try await waitUntil("the server to hold a connection") { server.connectionsAccepted >= 1 }
                    relay.finish()
                    try await group.waitForAll()
                }
                let elapsed = ContinuousClock.now - started
                // flush 1 s + close bound (5 s) + the publisher's /next probe (10 s timeout, cut by the teardown's
                // cancellation), with room for a loaded machine. Before the bound it never returned at all.
                #expect(elapsed < .seconds(30), "teardown took \(elapsed)")
                let stats = relay.summary.sink
                #expect(stats.relayed == 0, "\(stats)")
                #expect(!relay.summary.flushedInTime || stats.lost == stats.written, "\(stats)")
                // Conservation: every emitted event is written (then relayed or lost), dropped, refused, a writer
                // error, or still queued when the flush gave up.
                #expect(stats.emitted == 50, "\(stats)")
                #expect(stats.emitted == stats.written + stats.dropped + stats.refused + stats.writerErrors + stats.queuedEvents, "\(stats)")
                #expect(stats.written == stats.relayed + stats.lost, "\(stats)")
                #expect(stats.controlReceived == 3 && stats.controlRelayed == 0, "\(stats)")
                expectEveryEventAccountedFor(stats)
            }
        }
    }
}
