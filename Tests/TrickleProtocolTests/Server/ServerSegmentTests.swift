import NIOCore
import Testing
@testable import TrickleProtocol

/// The server's segment: what a re-send of an interrupted POST is checked against.
@Suite("ServerSegment")
struct ServerSegmentTests {
    /// A segment holding `text` in chunks of the given sizes, from one writer.
    static func segment(holding text: String, chunkSizes: [Int]) -> ServerSegment {
        let segment = ServerSegment(seq: 0)
        let writer = segment.attachWriter().token
        var bytes = ByteBuffer(string: text)
        var sizes = chunkSizes[...]
        while bytes.readableBytes > 0 {
            let size = min(sizes.popFirst() ?? bytes.readableBytes, bytes.readableBytes)
            #expect(segment.append(bytes.readSlice(length: size)!, writer: writer) == .appended)
        }
        return segment
    }

    @Test("a re-send compared in pieces that cut across the held chunks anywhere: equal pieces pass, the first differing byte is found")
    func resendComparedAcrossChunks() {
        let text = "0123456789abcdefghijklmnopqrstuvwxyz"
        let segment = Self.segment(holding: text, chunkSizes: [1, 5, 2, 9, 1, 1, 7])
        for pieceSize in [1, 3, 4, 10, 36] {
            var cursor = ServerSegment.ResendCursor()
            var offset = 0
            var sent = ByteBuffer(string: text)
            while sent.readableBytes > 0 {
                let piece = sent.readSlice(length: min(pieceSize, sent.readableBytes))!
                #expect(segment.firstDifference(piece, at: offset, cursor: &cursor) == nil, "piece size \(pieceSize) at \(offset)")
                offset += piece.readableBytes
            }
        }
        var differing = Array(text.utf8)
        differing[20] = UInt8(ascii: "!")
        var cursor = ServerSegment.ResendCursor()
        #expect(segment.firstDifference(ByteBuffer(bytes: differing[0..<16]), at: 0, cursor: &cursor) == nil)
        #expect(segment.firstDifference(ByteBuffer(bytes: differing[16..<30]), at: 16, cursor: &cursor) == 20)
    }

    @Test("a re-send longer than what the segment holds differs where the held bytes end")
    func resendPastHeldBytes() {
        let segment = Self.segment(holding: "abcdef", chunkSizes: [2, 2, 2])
        var cursor = ServerSegment.ResendCursor()
        #expect(segment.firstDifference(ByteBuffer(string: "abcd"), at: 0, cursor: &cursor) == nil)
        #expect(segment.firstDifference(ByteBuffer(string: "efgh"), at: 4, cursor: &cursor) == 6)
        var fresh = ServerSegment.ResendCursor()
        #expect(segment.firstDifference(ByteBuffer(string: "x"), at: 7, cursor: &fresh) == 7, "an offset past the held bytes")
    }
}
