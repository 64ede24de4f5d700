import NIOCore
import Testing
@testable import TrickleProtocol
import TrickleRelaySupport

@Suite("JSONLFramer", .timeLimit(.minutes(1)))
struct JSONLFramerTests {
    /// Feeds `input` in chunks of `chunkSize` bytes and collects the frames, flushing at the end.
    private func frames(_ input: String, chunkSize: Int, maximumLineBytes: Int = 1024) -> [String] {
        var framer = JSONLFramer(maximumLineBytes: maximumLineBytes)
        var frames: [JSONLFramer.Frame] = []
        var buffer = ByteBuffer(string: input)
        while buffer.readableBytes > 0 {
            framer.feed(buffer.readSlice(length: min(chunkSize, buffer.readableBytes))!, into: &frames)
        }
        framer.finish(into: &frames)
        return frames.map { frame in
            switch frame {
            case .line(let bytes, let number, let terminated):
                return "\(number):\(String(buffer: bytes))\(terminated ? "" : "|unterminated")"
            case .oversizeLine(let number, let bytes):
                return "\(number):oversize(\(bytes))"
            }
        }
    }

    @Test("splits lines identically for every chunk size", arguments: [1, 2, 3, 7, 64, 4096])
    func chunkSizes(chunkSize: Int) {
        let input = "{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}\n{\"tail\":"
        #expect(
            self.frames(input, chunkSize: chunkSize) == [
                "1:{\"a\":1}", "3:{\"b\":2}", "4:{\"c\":3}", "5:{\"tail\":|unterminated",
            ]
        )
    }

    @Test("skips a line over the limit without buffering it and goes on", arguments: [1, 5, 100])
    func oversize(chunkSize: Int) {
        let long = String(repeating: "x", count: 50)
        let input = "{\"a\":1}\n\(long)\n{\"b\":2}\n"
        #expect(self.frames(input, chunkSize: chunkSize, maximumLineBytes: 20) == ["1:{\"a\":1}", "2:oversize(50)", "3:{\"b\":2}"])
    }

    @Test("a line exactly at the limit is kept")
    func exactLimit() {
        let line = String(repeating: "y", count: 20)
        #expect(self.frames(line + "\n", chunkSize: 3, maximumLineBytes: 20) == ["1:\(line)"])
        #expect(self.frames(line + "z\n", chunkSize: 3, maximumLineBytes: 20) == ["1:oversize(21)"])
    }

    @Test("a line across chunks is one buffer of its own bytes, not a copy of the chunk it started in")
    func lineAcrossChunksHoldsOnlyItself() {
        var framer = JSONLFramer(maximumLineBytes: 1 << 20)
        var frames: [JSONLFramer.Frame] = []
        // A 256 KiB chunk of short lines whose last line goes on in the next two chunks.
        var first = ByteBufferAllocator().buffer(capacity: 256 * 1024)
        while first.readableBytes < 256 * 1024 - 64 { first.writeString("{\"n\":1}\n") }
        first.writeString("{\"tail\":\"")
        framer.feed(first, into: &frames)
        framer.feed(ByteBuffer(string: "abc"), into: &frames)
        framer.feed(ByteBuffer(string: "def\"}\n"), into: &frames)
        guard case .line(let tail, _, isTerminated: true)? = frames.last else {
            Issue.record("no last line")
            return
        }
        #expect(String(buffer: tail) == "{\"tail\":\"abcdef\"}")
        // Before: the first piece kept the whole chunk's storage and appending copied all 256 KiB of it.
        #expect(tail.capacity < 1024, "the line holds \(tail.capacity) bytes")
    }

    @Test("a long line in many small reads is assembled in place (16 MiB in 64-byte chunks: linear, not a copy per chunk)")
    func longLineInSmallChunks() {
        // Copying the line so far on every chunk would move 2^24 * 2^18 / 2 bytes (2 TB) here: far past the limit.
        let size = 16 << 20
        var framer = JSONLFramer(maximumLineBytes: 32 << 20)
        var frames: [JSONLFramer.Frame] = []
        let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64)
        for _ in 0..<(size / 64) { framer.feed(chunk, into: &frames) }
        framer.feed(ByteBuffer(string: "\n"), into: &frames)
        guard case .line(let line, number: 1, isTerminated: true)? = frames.first, frames.count == 1 else {
            Issue.record("\(frames.count) frames")
            return
        }
        #expect(line.readableBytes == size)
        #expect(line.getInteger(at: line.readerIndex, as: UInt8.self) == UInt8(ascii: "x"))
        #expect(line.getInteger(at: line.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "x"))
    }
}
