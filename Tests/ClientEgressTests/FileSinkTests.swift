import ClientEgress
import Foundation
import NIOCore
import Testing

@Suite("FileSink")
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
}
