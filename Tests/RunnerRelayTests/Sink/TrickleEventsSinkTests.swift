import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import RunnerRelay

/// One line read back from the channel, decoded for assertions.
struct ReadBack: Sendable {
    let raw: String
    let object: [String: any Sendable]

    init(_ raw: String) {
        self.raw = raw
        self.object = (try? JSONSerialization.jsonObject(with: Data(raw.utf8)) as? [String: any Sendable]) ?? [:]
    }

    var type: String? { self.object["type"] as? String }
    var envelope: [String: any Sendable]? { self.object["event"] as? [String: any Sendable] }
    var data: [String: any Sendable]? { self.envelope?["data"] as? [String: any Sendable] }
    var dataType: String? { self.data?["type"] as? String }
}

/// Runs a session relay against a fresh embedded server with a reader collecting every line.
func withRelay(
    sink: (inout TrickleEventsSink.Configuration) -> Void = { _ in },
    writer: JSONLWriter.Configuration = .init(),
    _ body: @Sendable (SessionRelay, TrickleServer, Recorder<ReadBack>) async throws -> Void
) async throws -> (summary: SessionRelay.Summary, lines: [ReadBack]) {
    var sinkConfiguration = TrickleEventsSink.Configuration(identity: SessionIdentity(sessionID: "sess-1", connectionID: "conn-1"))
    sink(&sinkConfiguration)
    let sinkSettings = sinkConfiguration
    return try await withTrickleServer { (server, base, client) async throws in
        server.createChannel(named: "events")
        let url = try TrickleChannelURL("\(base)/events")
        let relay = SessionRelay(
            configuration: .init(eventsURL: url, sink: sinkSettings, writer: writer),
            httpClient: client,
            logger: quietLogger
        )
        let reader = JSONLReader(url: url, httpClient: client, configuration: .init(subscriber: .init(start: .seq(0))), logger: quietLogger)
        let seen = Recorder<ReadBack>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await relay.run() }
            group.addTask {
                _ = try await reader.run { item in
                    if case .line(let line) = item { seen.append(ReadBack(String(buffer: line.bytes))) }
                }
            }
            try await body(relay, server, seen)
            relay.finish()
            try await group.waitForAll()
        }
        return (relay.summary, seen.values)
    }
}

@Suite("TrickleEventsSink", .timeLimit(.minutes(1)))
struct TrickleEventsSinkTests {
    @Test("a drain cancelled while idle ends (it spun a core forever, holding the process up at exit)")
    func cancelledWhileIdleEnds() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "events")
            let writer = JSONLWriter(url: try TrickleChannelURL("\(base)/events"), httpClient: client, logger: quietLogger)
            var configuration = TrickleEventsSink.Configuration(identity: SessionIdentity(sessionID: "sess-1"))
            configuration.isTelemetryEnabled = true
            let sink = TrickleEventsSink(writer: writer, configuration: configuration, logger: quietLogger)
            let uploads = Task { try? await writer.run() }
            let ended = Recorder<Bool>()
            let drain = Task {
                try? await sink.run()
                ended.append(true)
            }
            sink.emit(#"{"type":"metric","n":1}"#)
            try await waitUntil("the event written") { sink.stats.written == 1 }
            drain.cancel()
            try await waitUntil(timeout: .seconds(5), "the cancelled drain to end") { !ended.values.isEmpty }
            uploads.cancel()
            await uploads.value
        }
    }

    @Test("events emitted from 8 threads all arrive framed, stamped, and in per-thread order")
    func eightThreads() async throws {
        let perThread = 500
        let (summary, lines) = try await withRelay(sink: { $0.maximumQueuedEvents = 10_000 }) { relay, _, seen in
            DispatchQueue.concurrentPerform(iterations: 8) { thread in
                for n in 0..<perThread {
                    relay.sink.emit(#"{"type":"metric","thread":\#(thread),"n":\#(n)}"#)
                }
            }
            try await seen.wait("all events") { $0.count >= 8 * perThread }
        }
        #expect(summary.sink.emitted == 8 * perThread)
        #expect(summary.sink.relayed == 8 * perThread)
        #expect(summary.sink.dropped == 0)
        var lastSeen = [Int](repeating: -1, count: 8)
        for line in lines {
            #expect(line.type == "telemetry")
            #expect(line.envelope?["type"] as? String == "stream_trace")
            #expect(line.data?["session_id"] as? String == "sess-1")
            let thread = try #require(line.data?["thread"] as? Int)
            let n = try #require(line.data?["n"] as? Int)
            #expect(n == lastSeen[thread] + 1, "thread \(thread) out of order")
            lastSeen[thread] = n
        }
        #expect(lastSeen == [Int](repeating: perThread - 1, count: 8))
    }

    @Test("a stalled writer: bounded queue, the oldest dropped, an exact telemetry_dropped count, control lossless")
    func stalledWriter() async throws {
        let total = 20_000
        let controls = 50
        let (summary, lines) = try await withRelay(
            sink: {
                $0.maximumQueuedEvents = 1024
                $0.maximumQueuedBytes = 64 * 1024
                $0.dropReportInterval = .milliseconds(100)
            },
            writer: .init(publisher: .init(maximumBufferedBytes: 16 * 1024))
        ) { relay, server, lines in
            server.pauseIngest()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for n in 0..<controls {
                        await relay.sink.sendControl(ByteBuffer(string: #"{"type":"notification","payload":{"n":\#(n)}}"#))
                    }
                }
                let padding = String(repeating: "p", count: 200)
                for n in 0..<total {
                    relay.sink.emit(#"{"type":"metric","n":\#(n),"pad":"\#(padding)"}"#)
                    if n % 500 == 0 {
                        let stats = relay.sink.stats
                        #expect(stats.queuedEvents <= 1024)
                        #expect(stats.queuedBytes <= 64 * 1024)
                    }
                }
                server.resumeIngest()
                try await group.waitForAll()
            }
            try await waitUntil("the queue to drain") { relay.sink.stats.queuedEvents == 0 }
            _ = lines
        }
        #expect(summary.sink.dropped > 0)
        #expect(summary.sink.emitted == total)
        #expect(summary.sink.relayed + summary.sink.dropped == total)
        // Control events are never lost, and arrive in order.
        let notifications = lines.filter { $0.type == "notification" }.compactMap { ($0.object["payload"] as? [String: any Sendable])?["n"] as? Int }
        #expect(notifications == Array(0..<controls))
        // Telemetry: delivered in order; what went missing is older than the queue-full of newest events, which
        // all survived (drop-oldest: the newest are never the ones evicted).
        let delivered = lines.filter { $0.dataType == "metric" }.compactMap { $0.data?["n"] as? Int }
        #expect(delivered == delivered.sorted())
        let missing = Set(0..<total).subtracting(delivered).sorted()
        #expect(missing.count == summary.sink.dropped)
        let eventBytes = #"{"type":"metric","n":19999,"pad":""}"#.utf8.count + 200
        let queueHolds = min(1024, 64 * 1024 / eventBytes)
        if let lastMissing = missing.last {
            #expect(total - 1 - lastMissing >= queueHolds, "only \(total - 1 - lastMissing) newest events survived")
        }
        // Loss is reported downstream, exactly.
        let reports = lines.filter { $0.dataType == "telemetry_dropped" }
        #expect(!reports.isEmpty)
        #expect(reports.compactMap { $0.data?["dropped"] as? Int }.reduce(0, +) == summary.sink.dropped)
        #expect(summary.sink.dropReports == reports.count)
    }
}

extension TrickleEventsSinkTests {
    @Test("an event too large for the 5 MiB line cap is refused at emit, counted, and reported at teardown")
    func refusesOversize() async throws {
        let (summary, lines) = try await withRelay { relay, _, seen in
            relay.sink.emit(#"{"type":"huge","blob":"\#(String(repeating: "b", count: 5 * 1024 * 1024))"}"#)
            relay.sink.emit(#"{"type":"small"}"#)
            try await seen.wait("the small event") { $0.contains { $0.dataType == "small" } }
        }
        #expect(summary.sink.refused == 1)
        #expect(summary.sink.relayed == 1)
        let report = try #require(lines.first { $0.dataType == "telemetry_dropped" })
        #expect(report.data?["refused"] as? Int == 1)
        #expect(report.data?["dropped"] as? Int == 0)
        #expect(!lines.contains { $0.raw.utf8.count > 5 * 1024 * 1024 })
    }

    @Test("with telemetry disabled, events are counted and discarded; control events still flow")
    func consentOff() async throws {
        let (summary, lines) = try await withRelay(sink: { $0.isTelemetryEnabled = false }) { relay, _, seen in
            relay.sink.emit(#"{"type":"metric"}"#)
            relay.sink.emit(#"{"type":"metric"}"#)
            await relay.sink.sendControl(ByteBuffer(string: #"{"type":"runner_ready","runner_job_id":null}"#))
            try await seen.wait("the control event") { $0.count == 1 }
        }
        #expect(summary.sink.disabled == 2)
        #expect(summary.sink.relayed == 0)
        #expect(lines.map(\.type) == ["runner_ready"])
    }

    @Test("invalid telemetry events are counted, not sent; secrets are scrubbed before they leave")
    func invalidAndScrubbed() async throws {
        let (summary, lines) = try await withRelay { relay, _, seen in
            relay.sink.emit("[1,2]")
            relay.sink.emit(#"{"no_type":true}"#)
            relay.sink.emit("not json")
            relay.sink.emit(#"{"type":"error","error":{"message":"auth failed for jane@example.com with sk-abcdefghijklmnopqrstuvwxyz"}}"#)
            try await seen.wait("the error event") { $0.count == 1 }
        }
        #expect(summary.sink.invalid == 3)
        #expect(summary.sink.redactions == 2)
        #expect(lines.count == 1)
        #expect(lines[0].raw.contains("[REDACTED:email]") && lines[0].raw.contains("[REDACTED:api_key]"))
        #expect(!lines[0].raw.contains("jane@example.com"))
    }
}
