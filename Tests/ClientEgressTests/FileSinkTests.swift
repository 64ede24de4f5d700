import ClientEgress
import Foundation
import Logging
import NIOCore
import Testing
import TrickleTestSupport

@Suite("FileSink", .timeLimit(.minutes(1)))
struct FileSinkTests {
    @Test("small batches (written inline) and large ones (on the blocking pool) append in order, byte-exact")
    func appends() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("file-sink-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let sink = try FileSink(path: path)
        let small = (0..<3).map { TelemetryRecord(envelope: ByteBuffer(string: #"{"id":"s\#($0)","v":1.0e3}"#), seq: 0, lineNumber: $0 + 1) }
        let padding = String(repeating: "x", count: 100_000)
        let large = (0..<4).map { TelemetryRecord(envelope: ByteBuffer(string: #"{"id":"l\#($0)","p":"\#(padding)"}"#), seq: 0, lineNumber: $0 + 4) }
        try await sink.export(small)
        try await sink.export(large)
        try await sink.export(small)
        await sink.shutdown()
        let expected = (small + large + small).map { String(buffer: $0.envelope) + "\n" }.joined()
        #expect(try String(contentsOfFile: path, encoding: .utf8) == expected)
    }

    @Test("a path that cannot be opened is refused with the path and the reason")
    func unwritable() {
        let error = #expect(throws: FileSinkError.self) { try FileSink(path: "/nonexistent-dir/telemetry.jsonl") }
        #expect(error?.description.contains("/nonexistent-dir/telemetry.jsonl") == true)
        #expect(error?.description.contains("No such file") == true)
    }

    @Test("a FIFO whose reader stops (file:/dev/stdout into | less): exports never block, what does not fit fails its batch, shutdown is bounded and says what was left unwritten")
    func stoppedReader() async throws {
        // The sink's writing thread is still in a write when the reader closes at the end: an EPIPE, as in the
        // product (which ignores SIGPIPE in `main`), not a signal that ends the test process.
        signal(SIGPIPE, SIG_IGN)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("file-sink-fifo-\(UUID().uuidString)").path
        #expect(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        // Nobody reads yet: refused at once, in words (opening it would otherwise block the start for good).
        let early = #expect(throws: FileSinkError.self) { try FileSink(path: path) }
        #expect(early?.description.contains("a FIFO nobody reads") == true, "\(early?.description ?? "")")

        let reader = open(path, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        defer { close(reader) }
        let logs = CapturedLogs()
        let sink = try FileSink(path: path, logger: logs.logger())
        let padding = String(repeating: "x", count: 10_000)
        let batch = (0..<10).map { TelemetryRecord(envelope: ByteBuffer(string: #"{"id":"e\#($0)","p":"\#(padding)"}"#), seq: 0, lineNumber: $0 + 1) }
        // 10 MB into a reader that does not read: the pipe's 64 KiB and the queue's 4 MiB fill, the rest fails.
        var failed = 0
        let started = ContinuousClock.now
        for _ in 0..<100 {
            do {
                try await sink.export(batch)
            } catch let error as FileSinkError {
                failed += 1
                #expect(error.description.contains("is not keeping up"), "\(error)")
            }
        }
        #expect(failed >= 50, "\(failed) batches failed")
        // A shutdown waits for the reader for a bounded time (2 s), then reports what it leaves unwritten.
        await sink.shutdown()
        #expect(ContinuousClock.now - started < .seconds(20))
        let warning = try #require(logs.lines.first { $0.contains("were not written") }, "\(logs.lines)")
        #expect(warning.contains("sink.unwritten_events"), "\(warning)")
    }
}
