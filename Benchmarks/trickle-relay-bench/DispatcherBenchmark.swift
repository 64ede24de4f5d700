import ClientEgress
import Foundation
import NIOCore
import RelayTracing

/// In-memory chunks as a byte stream.
struct MemoryChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let data: ByteBuffer
    let chunkSize: Int

    struct AsyncIterator: AsyncIteratorProtocol {
        var remaining: ByteBuffer
        let chunkSize: Int
        mutating func next() async throws -> ByteBuffer? {
            guard self.remaining.readableBytes > 0 else { return nil }
            return self.remaining.readSlice(length: Swift.min(self.chunkSize, self.remaining.readableBytes))
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(remaining: self.data, chunkSize: self.chunkSize) }
}

func benchmarkDispatcher() async throws {
    let data = makeLines(totalBytes: 200 * 1024 * 1024)
    // With tracing on, every dispatch call is a span of the relay's tracer (exported to a port nobody listens on).
    let tracing = try ObservabilityModes.tracer(exportingTo: 9)
    for pass in 1...3 {
        let sink = NullSink()
        let dispatcher = EventDispatcher(sink: sink, logger: logger, tracing: DeliveryTracing(tracer: tracing?.tracer))
        let elapsed = try await ContinuousClock().measure {
            try await dispatcher.run(bytes: MemoryChunks(data: data, chunkSize: 64 * 1024), source: "bench")
        }
        let stats = dispatcher.stats
        print(
            String(
                format: "dispatcher pass %d -> NullSink: %.0f MB/s, %.0f events/s (%d telemetry, %d malformed)",
                pass, megabytesPerSecond(data.readableBytes, elapsed), Double(stats.telemetry) / elapsed.seconds,
                stats.telemetry, stats.malformed
            )
        )
    }
}

/// A file read in 1 MiB chunks (blocking reads: fine for a benchmark's own loop).
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let path: String

    struct AsyncIterator: AsyncIteratorProtocol {
        let descriptor: Int32
        mutating func next() async throws -> ByteBuffer? {
            guard self.descriptor >= 0 else { return nil }
            var buffer = ByteBufferAllocator().buffer(capacity: 1 << 20)
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 1 << 20) { Swift.max(read(self.descriptor, $0.baseAddress, 1 << 20), 0) }
            if count == 0 { close(self.descriptor) }
            return count == 0 ? nil : buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(descriptor: open(self.path, O_RDONLY)) }
}

/// `replay` of a 1 GB recording into NullSink: the dispatcher fed from disk, with resident memory sampled.
func benchmarkReplay() async throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("trickle-relay-replay-bench.jsonl").path
    let block = makeLines(totalBytes: 64 * 1024 * 1024)
    FileManager.default.createFile(atPath: path, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    for _ in 0..<16 { try handle.write(contentsOf: Data(block.readableBytesView)) }
    try handle.close()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    let sink = NullSink()
    let dispatcher = EventDispatcher(sink: sink, logger: logger, countsDataTypes: true)
    let before = residentMemory().current
    let elapsed = try await ContinuousClock().measure {
        try await dispatcher.run(bytes: FileChunks(path: path), source: "bench")
    }
    let after = residentMemory()
    print(
        String(
            format: "replay of a %.2f GB recording -> NullSink (with per-data.type counts): %.0f MB/s, %d events; RSS %.1f MiB before, %.1f MiB after (peak %.1f MiB)",
            Double(size) / 1e9, megabytesPerSecond(size, elapsed), dispatcher.stats.telemetry,
            Double(before) / 1048576, Double(after.current) / 1048576, Double(after.peak) / 1048576
        )
    )
}
