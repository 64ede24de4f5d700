import AsyncHTTPClient
import ClientEgress
import Foundation
import NIOCore
import RunnerRelay
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

@Suite("Runner to client, byte-exact", .timeLimit(.minutes(1)))
struct ByteExactTests {
    @Test("envelopes with odd key order, 1.0e3, \\u00e9 escapes and nested arrays reach the FileSink as the runner sent them")
    func byteExact() async throws {
        let envelopes = [
            #"{"data":{"type":"pipeline_loaded","load_duration_ms":1.0e3,"z":[[1,[2,[3]]],{"b":2,"a":1}],"note":"caf\u00e9 \u2713 \ud83c\udf89"},"timestamp":"1763719200000","type":"stream_trace","id":"11111111-1111-4111-8111-111111111111"}"#,
            #"{"id":"22222222-2222-4222-8222-222222222222","type":"stream_trace","timestamp":"1763719200001","data":{"type":"stream_heartbeat","fps_in":29.970,"big":12345678901234567890,"neg":-0.0,"e":1E-7}}"#,
        ]
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("trickle-relay-byte-exact-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "exact")
            let url = try TrickleChannelURL("\(base)/exact")
            let sink = try FileSink(path: path, syncPolicy: .everyBatch)
            let daemon = ClientDaemon(eventsURL: url, httpClient: client, reader: .init(subscriber: .init(start: .seq(0))), sink: sink, logger: quietLogger)
            let relay = SessionRelay(
                configuration: .init(eventsURL: url, sink: .init(identity: .init(sessionID: "exact"))),
                httpClient: client,
                logger: quietLogger
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await daemon.run() }
                group.addTask { try await relay.run() }
                // One pretty-printed: only whitespace outside strings may go.
                relay.sink.emit(envelopes[0].replacingOccurrences(of: #","timestamp""#, with: ",\n  \"timestamp\""))
                relay.sink.emit(envelopes[1])
                try await waitUntil("both written") { relay.sink.stats.written == 2 }
                relay.finish()
                try await group.waitForAll()
            }
            #expect(daemon.endOfStream == .closed || daemon.endOfStream == .notFound)
        }
        let written = try String(contentsOfFile: path, encoding: .utf8)
        #expect(written == envelopes.joined(separator: "\n") + "\n")
    }
}
