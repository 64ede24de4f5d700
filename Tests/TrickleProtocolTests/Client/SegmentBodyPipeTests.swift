import NIOCore
import Testing
@testable import TrickleProtocol
import TrickleTestSupport

/// The streamed body of a segment POST: an attempt ends cleanly only when it handed out the whole finished segment.
@Suite("SegmentBodyPipe")
struct SegmentBodyPipeTests {
    @Test("an attempt superseded by a re-send aborts (throws) instead of ending as a complete segment; the re-send repeats every byte")
    func supersededAttemptAborts() async throws {
        let pipe = SegmentBodyPipe(highWatermark: 1 << 20, retentionLimit: 1 << 20, predecessor: nil)
        try pipe.append(ByteBuffer(string: "one\n"))
        var first = pipe.makeAsyncIterator()
        #expect(try await first.next() == ByteBuffer(string: "one\n"))
        // The first attempt waits for more; the request fails and the publisher starts again from the first byte.
        let waiting = Task { [first] in
            var iterator = first
            return try await iterator.next()
        }
        try await waitUntil("the first attempt to wait for bytes") { pipe.hasWaitingConsumer }
        #expect(pipe.rewind())
        await #expect(throws: SegmentBodyPipe.SupersededAttempt.self) { try await waiting.value }
        // A pull of the old attempt after the rewind aborts too.
        await #expect(throws: SegmentBodyPipe.SupersededAttempt.self) { try await first.next() }

        var second = pipe.makeAsyncIterator()
        try pipe.append(ByteBuffer(string: "two\n"))
        pipe.finish()
        #expect(!pipe.handedOutEverything)
        #expect(try await second.next() == ByteBuffer(string: "one\n"))
        #expect(try await second.next() == ByteBuffer(string: "two\n"))
        #expect(try await second.next() == nil)
        #expect(pipe.handedOutEverything)
    }

    @Test("a finished segment not yet handed out whole is not reported as sent")
    func notAllHandedOut() async throws {
        let pipe = SegmentBodyPipe(highWatermark: 1 << 20, retentionLimit: 1 << 20, predecessor: nil)
        try pipe.append(ByteBuffer(string: "a\n"))
        try pipe.append(ByteBuffer(string: "b\n"))
        pipe.finish()
        var attempt = pipe.makeAsyncIterator()
        #expect(try await attempt.next() == ByteBuffer(string: "a\n"))
        #expect(!pipe.handedOutEverything, "the server could answer now; 'b' never went out")
        #expect(try await attempt.next() == ByteBuffer(string: "b\n"))
        #expect(try await attempt.next() == nil)
        #expect(pipe.handedOutEverything)
    }
}
