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
        var first = pipe.attempt().makeAsyncIterator()
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

        var second = pipe.attempt().makeAsyncIterator()
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
        var attempt = pipe.attempt().makeAsyncIterator()
        #expect(try await attempt.next() == ByteBuffer(string: "a\n"))
        #expect(!pipe.handedOutEverything, "the server could answer now; 'b' never went out")
        #expect(try await attempt.next() == ByteBuffer(string: "b\n"))
        #expect(try await attempt.next() == nil)
        #expect(pipe.handedOutEverything)
    }

    @Test("an attempt's iterator made only after the next attempt started takes nothing from it: the re-send keeps the segment's head")
    func lateIteratorOfFailedAttempt() async throws {
        let pipe = SegmentBodyPipe(highWatermark: 1 << 20, retentionLimit: 1 << 20, predecessor: nil)
        try pipe.append(ByteBuffer(string: "head\n"))
        // The publisher makes attempt 1's request; its connection fails before the HTTP client's body task ran.
        let first = pipe.attempt()
        #expect(pipe.rewind())
        let second = pipe.attempt()
        try pipe.append(ByteBuffer(string: "tail\n"))
        pipe.finish()
        // Attempt 1's body task starts late, now: it must get nothing of attempt 2's bytes.
        var late = first.makeAsyncIterator()
        await #expect(throws: SegmentBodyPipe.SupersededAttempt.self) { try await late.next() }
        let delivered = try await Self.drain(second, upTo: 3)
        #expect(delivered == ["head\n", "tail\n"], "the re-send starts at the segment's first byte")
        #expect(pipe.handedOutEverything)
    }

    @Test("a second iterator of one attempt aborts at once instead of splitting the body between two requests")
    func secondIteratorOfOneAttempt() async throws {
        let pipe = SegmentBodyPipe(highWatermark: 1 << 20, retentionLimit: 1 << 20, predecessor: nil)
        try pipe.append(ByteBuffer(string: "a\n"))
        pipe.finish()
        let attempt = pipe.attempt()
        var one = attempt.makeAsyncIterator()
        var two = attempt.makeAsyncIterator()
        await #expect(throws: SegmentBodyPipe.SupersededAttempt.self) { try await two.next() }
        #expect(try await one.next() == ByteBuffer(string: "a\n"))
        #expect(try await one.next() == nil)
    }

    /// The chunks one attempt hands out, as strings, up to `limit` (the end of the body included).
    static func drain(_ attempt: SegmentBodyPipe.Attempt, upTo limit: Int) async throws -> [String] {
        var chunks: [String] = []
        for try await chunk in attempt {
            chunks.append(String(buffer: chunk))
            if chunks.count == limit { break }
        }
        return chunks
    }
}
