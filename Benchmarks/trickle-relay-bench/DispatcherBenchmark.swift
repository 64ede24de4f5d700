import ClientEgress
import Foundation
import NIOCore

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
    for pass in 1...3 {
        let sink = NullSink()
        let dispatcher = EventDispatcher(sink: sink, logger: logger)
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
