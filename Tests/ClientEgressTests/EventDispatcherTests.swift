import ClientEgress
import Logging
import NIOCore
import Synchronization
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Keeps every envelope it is given.
final class RecordingSink: EgressSink {
    private let records = RelayMutex<[String]>([])
    var envelopes: [String] { self.records.withLock { $0 } }

    nonisolated(nonsending) func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        let texts = records.map { String(buffer: $0.envelope) }
        self.records.withLock { $0.append(contentsOf: texts) }
    }

    func forceFlush() async throws {}
    func shutdown() async {}
}

/// A byte stream from an array of chunks.
struct Chunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let chunks: [ByteBuffer]

    struct AsyncIterator: AsyncIteratorProtocol {
        var remaining: ArraySlice<ByteBuffer>
        mutating func next() async throws -> ByteBuffer? { self.remaining.popFirst() }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(remaining: self.chunks[...]) }
}

@Suite("EventDispatcher")
struct EventDispatcherTests {
    @Test("routes telemetry to the sink byte-exact and everything else to local consumers, counting bad lines")
    func routing() async throws {
        let sink = RecordingSink()
        let local = Recorder<String>()
        let dispatcher = EventDispatcher(
            sink: sink,
            logger: quietLogger,
            countsDataTypes: true,
            localConsumer: { local.append(String(buffer: $0.line)) }
        )
        let input = """
            {"type":"runner_ready","runner_job_id":null}
            {"event" : {"z":1,"a":[1.0e3,"\\u00e9",{"n":[[]]}],"data":{"type":"x"}} ,"type":"telemetry"}
            {"type":"telemetry","event":[1]}
            {"type":"telemetry"}
            [1,2]
            {broken
            {"no_type":true}

            """
        try await dispatcher.run(bytes: Chunks(chunks: [ByteBuffer(string: input)]), source: "test")
        #expect(sink.envelopes == [#"{"z":1,"a":[1.0e3,"\u00e9",{"n":[[]]}],"data":{"type":"x"}}"#])
        #expect(local.values == [#"{"type":"runner_ready","runner_job_id":null}"#, #"{"no_type":true}"#])
        let stats = dispatcher.stats
        #expect(stats.telemetry == 1)
        #expect(stats.telemetryWithoutObjectEvent == 2)
        #expect(stats.nonObject == 1)
        #expect(stats.malformed == 1)
        #expect(stats.byType["runner_ready"] == 1)
        #expect(stats.byDataType["x"] == 1)
    }

    @Test("a long stream in many chunks (routed on two cores, delivered a chunk behind): the same envelopes, local events and problems, in line order")
    func manyChunksKeepLineOrder() async throws {
        var text = ""
        var envelopes: [String] = []
        var locals: [String] = []
        var problems: [String] = []
        for n in 1...6_000 {
            let line: String
            switch n % 37 {
            case 5:
                line = #"{"type":"telemetry","event":{"id":"\#(n)""#  // malformed
                problems.append("\(n) malformed_json")
            case 17:
                line = "[\(n)]"
                problems.append("\(n) not_an_object")
            case 29:
                line = #"{"type":"telemetry","event":\#(n)}"#
                problems.append("\(n) telemetry_without_object_event")
            default:
                if n % 11 == 0 {
                    line = #"{"type":"notification","n":\#(n)}"#
                    locals.append(line)
                } else {
                    let envelope = #"{"id":"e\#(n)","timestamp":"\#(1_000 + n)","data":{"type":"t\#(n % 3)","note":"caf\u00e9 \#(String(repeating: "x", count: n % 90))"}}"#
                    envelopes.append(envelope)
                    line = #"{"type":"telemetry","event":\#(envelope)}"#
                }
            }
            text += line + "\n"
        }
        // Chunks of 16 KiB: lines cut across chunks, about 100 lines in each (routed in two halves from 64).
        var whole = ByteBuffer(string: text)
        var chunks: [ByteBuffer] = []
        while whole.readableBytes > 0 { chunks.append(whole.readSlice(length: min(16_384, whole.readableBytes))!) }
        #expect(chunks.count > 20)
        let sink = RecordingSink()
        let local = Recorder<String>()
        let seen = Recorder<String>()
        let dispatcher = EventDispatcher(
            sink: sink,
            logger: quietLogger,
            countsDataTypes: true,
            onProblem: { seen.append("\($0.lineNumber ?? -1) \($0.reason)") },
            localConsumer: { local.append(String(buffer: $0.line)) }
        )
        try await dispatcher.run(bytes: Chunks(chunks: chunks), source: "test")
        #expect(sink.envelopes == envelopes)
        #expect(local.values == locals)
        #expect(seen.values == problems)
        let stats = dispatcher.stats
        #expect(stats.lines == 6_000 && stats.telemetry == envelopes.count)
        #expect(stats.byDataType.values.reduce(0, +) == envelopes.count)
        #expect(stats.malformed + stats.nonObject + stats.telemetryWithoutObjectEvent == problems.count)
    }

    @Test("the log sink names type, id and session, never the payload")
    func logLine() {
        let envelope = #"{"id":"abc","type":"stream_trace","timestamp":"1","data":{"secret":"x","type":"pipeline_loaded","session_id":"s-1"}}"#
        #expect(LogSink.line(for: ByteBuffer(string: envelope)) == "TELEMETRY type=pipeline_loaded id=abc session=s-1 relayed_via=trickle")
    }

    @Test("fuzz: 10,000 random and mutated lines cannot crash it, and every valid line after garbage is dispatched")
    func fuzz() async throws {
        let sink = RecordingSink()
        let dispatcher = EventDispatcher(sink: sink, logger: quietLogger)
        var generator = SystemRandomNumberGenerator()
        let valid = Array(#"{"type":"telemetry","event":{"id":"i","type":"stream_trace","timestamp":"1","data":{"type":"t","v":[1,{"k":"é"}]}}}"#.utf8)
        var chunks: [ByteBuffer] = []
        for n in 0..<10_000 {
            var garbage: [UInt8]
            if n % 2 == 0 {
                garbage = (0..<Int.random(in: 0...300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            } else {
                garbage = valid
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    let index = Int.random(in: 0..<garbage.count, using: &generator)
                    switch Int.random(in: 0..<3, using: &generator) {
                    case 0: garbage[index] = UInt8.random(in: 0...255, using: &generator)
                    case 1: garbage.remove(at: index)
                    default: garbage.insert(UInt8.random(in: 0...255, using: &generator), at: index)
                    }
                }
            }
            var chunk = ByteBuffer(bytes: garbage)
            chunk.writeString("\n" + #"{"type":"telemetry","event":{"type":"marker","n":\#(n)}}"# + "\n")
            // Split at a random point: lines also arrive across chunk boundaries.
            let cut = Int.random(in: 0...chunk.readableBytes, using: &generator)
            chunks.append(chunk.getSlice(at: 0, length: cut)!)
            chunks.append(chunk.getSlice(at: cut, length: chunk.readableBytes - cut)!)
        }
        try await dispatcher.run(bytes: Chunks(chunks: chunks), source: "fuzz", maximumLineBytes: 64 * 1024)
        let markers = sink.envelopes.filter { $0.hasPrefix(#"{"type":"marker""#) }
        #expect(markers.count == 10_000)
        #expect(markers == (0..<10_000).map { #"{"type":"marker","n":\#($0)}"# })
        let stats = dispatcher.stats
        #expect(stats.telemetry >= 10_000)
        #expect(stats.malformed + stats.nonObject + stats.telemetryWithoutObjectEvent > 0)
    }
}

@Suite("EventDispatcher resuming after a spool position", .timeLimit(.minutes(1)))
struct EventDispatcherResumeTests {
    @Test("skips only the already-spooled lines of the segment it resumes in, and counts them")
    func resume() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "resume-events")
            let url = try TrickleChannelURL("\(base)/resume-events")
            let writer = JSONLWriter(url: url, httpClient: client, logger: quietLogger)
            let sink = RecordingSink()
            let dispatcher = EventDispatcher(sink: sink, logger: quietLogger)
            let reader = JSONLReader(url: url, httpClient: client, configuration: .init(subscriber: .init(start: .seq(0))), logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                for n in 1...5 { try await writer.write(line: ByteBuffer(string: #"{"type":"telemetry","event":{"id":"s0-\#(n)"}}"#)) }
                await writer.flush()
                for n in 1...3 { try await writer.write(line: ByteBuffer(string: #"{"type":"telemetry","event":{"id":"s1-\#(n)"}}"#)) }
                try await writer.close()
                let end = try await dispatcher.run(reader: reader, resumingAfter: (seq: 0, line: 3))
                #expect(end == .closed || end == .notFound)
                try await group.waitForAll()
            }
            #expect(sink.envelopes == [#"{"id":"s0-4"}"#, #"{"id":"s0-5"}"#, #"{"id":"s1-1"}"#, #"{"id":"s1-2"}"#, #"{"id":"s1-3"}"#])
            #expect(dispatcher.stats.skippedOnResume == 3)
        }
    }

    @Test("envelope fields inside data are data's own: a member of the same name after data is not taken for it")
    func envelopeFieldsStayInsideData() {
        let envelope = ByteBuffer(string: #"{"id":"e1","data":{"note":"n","session_id":"s1"},"type":"stream_trace","timestamp":"17"}"#)
        let fields = EnvelopeFields(envelope)
        #expect(fields.id == "e1")
        #expect(fields.sessionID == "s1")
        #expect(fields.type == nil, "data has no type; the envelope's own type is not data.type")
        #expect(EnvelopeFields.dataType(of: envelope) == nil)
        let typed = ByteBuffer(string: #"{"data":{"type":"metric","x":{"type":"inner"}},"id":"e2"}"#)
        #expect(EnvelopeFields.dataType(of: typed).map { String(buffer: $0) } == "metric")
        #expect(EnvelopeFields(typed).type == "metric")
    }

    @Test("the replay's one walk reads id, timestamp and data.type exactly as the three separate reads do, in any member order")
    func oneWalkSameAsThree() {
        let members = [
            #""id":"e\u0031""#, #""id":7"#, #""timestamp":"1763769600123""#, #""timestamp":"12x""#, #""timestamp":"1234567890123456789""#,
            #""data":{"note":"n","type":"metric","x":{"type":"inner"}}"#, #""data":{"type":5}"#, #""data":"text""#, #""data":{}"#,
            #""type":"stream_trace""#, #""pad":[1,{"id":"inner"},"\"id\""]"#, #""i\u0064":"escaped key""#,
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let chosen = (0..<Int.random(in: 0...6, using: &generator)).map { _ in members.randomElement(using: &generator)! }
            let envelope = ByteBuffer(string: "{" + chosen.joined(separator: ",") + "}")
            let walked = EnvelopeFields.idTimestampAndDataType(of: envelope)
            let text = String(buffer: envelope)
            #expect(walked.id.map { String(buffer: $0) } == EnvelopeFields.stringBytes("id", of: envelope).map { String(buffer: $0) }, "\(text)")
            #expect(walked.timestamp == EnvelopeFields.timestamp(of: envelope), "\(text)")
            #expect(walked.dataType.map { String(buffer: $0) } == EnvelopeFields.dataType(of: envelope).map { String(buffer: $0) }, "\(text)")
        }
    }
}
