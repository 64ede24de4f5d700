#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import ClientEgress

/// `Replayer` and `ReplaySummary` directly (issue #24): the replay loop lives in the library, the executable only
/// prints what these return.
@Suite("Replayer and ReplaySummary", .timeLimit(.minutes(1)))
struct ReplayerTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures")

    func replay(_ files: [String], strict: Bool = false, maximumLineBytes: Int = 65_536) async throws -> (ReplaySummary, RecordingSink) {
        let sink = RecordingSink()
        let replayer = Replayer(
            configuration: .init(files: files.map { Self.fixtures.appendingPathComponent($0).path }, maximumLineBytes: maximumLineBytes, strict: strict),
            sink: sink,
            logger: quietLogger
        )
        try await replayer.run()
        return (await replayer.finish(), sink)
    }

    @Test("a recorded session: every telemetry envelope reaches the sink byte for byte, counted by type and data.type")
    func recorded() async throws {
        let (summary, sink) = try await self.replay(["recorded-session.jsonl"])
        #expect(summary.lines == 18 && summary.telemetry == 11)
        #expect(sink.envelopes.count == 11)
        #expect(summary.byDataType["stream_heartbeat"] == 2)
        #expect(summary.problems.isEmpty && summary.duplicates == 0)
        let recording = try String(contentsOf: Self.fixtures.appendingPathComponent("recorded-session.jsonl"), encoding: .utf8)
        for envelope in sink.envelopes { #expect(recording.contains(envelope), "\(envelope.prefix(60))") }
        #expect(summary.text.hasPrefix("replayed 1 file(s): 18 lines, 11 telemetry\n"))
        #expect(summary.text.contains("duplicate ids: none"))
    }

    @Test("two files are two segments: the same events as the whole recording")
    func split() async throws {
        let (summary, _) = try await self.replay(["split-session/segment-0.jsonl", "split-session/segment-1.jsonl"])
        #expect(summary.lines == 18 && summary.telemetry == 11 && summary.files.count == 2)
    }

    @Test("a malformed recording: every skipped line located and counted; the text names them and the duplicate")
    func malformed() async throws {
        let (summary, _) = try await self.replay(["malformed-session.jsonl"])
        #expect(summary.problems.map { "\($0.line ?? -1) \($0.reason)" } == [
            "3 malformed_json", "4 malformed_json", "5 not_an_object", "6 telemetry_without_object_event", "7 line_too_large", "10 truncated_line",
        ])
        #expect(summary.oversize == 1 && summary.telemetry == 3 && summary.duplicates == 1)
        #expect(summary.text.contains("malformed-session.jsonl:7: line_too_large"))
        #expect(summary.text.contains("duplicate ids: 1 repeats of 1 distinct ids"))
    }

    @Test("strict: the first bad line stops the replay with its location")
    func strict() async throws {
        await #expect {
            try await self.replay(["malformed-session.jsonl"], strict: true)
        } throws: { error in
            (error as? ReplayError)?.code == .strictStop && "\(error)".contains("malformed-session.jsonl:3: malformed_json")
        }
    }

    @Test("a file that cannot be read is named")
    func unreadable() async throws {
        await #expect {
            try await self.replay(["no-such-file.jsonl"])
        } throws: { error in
            (error as? ReplayError)?.code == .unreadable && "\(error)".contains("no-such-file.jsonl")
        }
    }

    @Test("a recording of several MiB (read in 1 MiB chunks, each on two cores): every envelope in order, duplicates, time span and data types as one pass would find them")
    func largeRecording() async throws {
        var text = ""
        var expected: [String] = []
        for n in 0..<20_000 {
            // Every 1,000th event repeats the id of the event 500 before it (once each: 20 repeats).
            let id = n % 1_000 == 999 ? "id-\(n - 500)" : "id-\(n)"
            let envelope = #"{"id":"\#(id)","timestamp":"\#(5_000_000 - n)","data":{"type":"t\#(n % 40)","pad":"\#(String(repeating: "p", count: n % 200))"}}"#
            expected.append(envelope)
            text += #"{"type":"telemetry","event":\#(envelope)}"# + "\n"
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("large-\(UUID().uuidString).jsonl").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(text.utf8.count > 3 * 1024 * 1024)
        let sink = RecordingSink()
        let replayer = Replayer(configuration: .init(files: [path]), sink: sink, logger: quietLogger)
        try await replayer.run()
        let summary = await replayer.finish()
        #expect(sink.envelopes == expected)
        #expect(summary.telemetry == 20_000 && summary.duplicates == 20)
        #expect(summary.duplicateIDs == (0..<20).map { "id-\($0 * 1_000 + 499)" })
        #expect(summary.firstTimestamp == 5_000_000 - 19_999 && summary.lastTimestamp == 5_000_000)
        // 40 types: more than the tally compares in its list (32), so its dictionary counts too, and the halves merge.
        #expect(summary.byDataType == Dictionary(uniqueKeysWithValues: (0..<40).map { ("t\($0)", 500) }))
    }

    @Test("the text summary stays bounded: 20 problems in full, the rest counted; a hint when most lines are not JSON")
    func boundedText() {
        var summary = ReplaySummary()
        summary.files = ["garbage.jsonl"]
        summary.lines = 5_000
        summary.malformed = 5_000
        summary.problems = (1...1_000).map { ReplaySummary.Problem(file: "garbage.jsonl", line: $0, reason: "malformed_json", detail: "") }
        summary.problemsNotListed = 4_000
        summary.problemsByReason = ["malformed_json": 5_000]
        let text = summary.text
        #expect(text.split(separator: "\n").count < 40)
        #expect(text.contains("garbage.jsonl:20: malformed_json") && !text.contains("garbage.jsonl:21:"))
        #expect(text.contains("… and 4980 more"))
        #expect(text.contains("hint: most lines are not JSON"))
    }

    @Test("a file read one chunk ahead: every byte in order; closed part-way, nothing more is read after the read in flight")
    func readAheadFile() async throws {
        let bytes = (0..<(5 * 512 * 1024)).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ahead-\(UUID().uuidString).bin").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }

        let whole = try ReadAheadFile(path: path, chunkSize: 1 << 20)
        var read: [UInt8] = []
        var chunks = 0
        for try await chunk in whole.chunks {
            read += chunk.readableBytesView
            chunks += 1
        }
        whole.close()
        #expect(read == bytes)
        #expect(chunks == 3)  // 1 MiB, 1 MiB, 0.5 MiB

        let partial = try ReadAheadFile(path: path, chunkSize: 1 << 16)
        var iterator = partial.chunks.makeAsyncIterator()
        #expect(try await iterator.next()?.readableBytes == 1 << 16)  // and the next read is under way
        partial.close()
        var after = 0
        while let chunk = try await iterator.next() {
            after += chunk.readableBytes
            #expect(after <= 1 << 16, "read on after close")
        }
        #expect(throws: FileChunks.ReadError.self) { try ReadAheadFile(path: path + ".missing", chunkSize: 1024) }
    }
}

@Suite("FingerprintSet")
struct FingerprintSetTests {
    @Test("holds what Set<UInt64> holds: 200,000 inserts with repeats, zero and colliding low bits included")
    func sameAsSet() {
        var set = FingerprintSet()
        var reference = Set<UInt64>()
        var generator = SystemRandomNumberGenerator()
        for n in 0..<200_000 {
            let fingerprint: UInt64 =
                switch n % 5 {
                case 0: UInt64(n / 5) << 40  // same low bits
                case 1: UInt64.random(in: 0..<UInt64(n + 1), using: &generator)  // repeats, and 0
                default: UInt64.random(in: .min ... .max, using: &generator)
                }
            #expect(set.insert(fingerprint) == reference.insert(fingerprint).inserted)
        }
        #expect(set.count == reference.count)
    }
}
