import NIOCore
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport

/// The subscriber's own HTTP/1.1 reply parser: the framings servers use, cut anywhere, and every way a reply can
/// break the grammar or a bound — an error naming what was wrong, never a trap, never unbounded memory.
@Suite("SegmentReplyParser")
struct SegmentReplyParserTests {
    /// What one reply parsed to: its head, its body bytes joined, whether it ended.
    struct Parsed: Equatable {
        var status: Int?
        var reusable: Bool?
        var headers: [String: String] = [:]
        var body: [UInt8] = []
        var ended = false
    }

    /// Feeds each reply (one request each, as on a kept connection) in pieces of `cut` bytes (whole when `nil`),
    /// then reports the connection closed when asked, and collects what was parsed.
    static func parse(_ texts: String..., cut: Int? = nil, closeAfter: Bool = false) throws(SegmentReplyError) -> [Parsed] {
        var parser = SegmentReplyParser()
        var replies: [Parsed] = []
        for text in texts {
            parser.expectReply()
            replies.append(Parsed())
            let bytes = Array(text.utf8)
            let step = cut ?? max(bytes.count, 1)
            var offset = 0
            while offset < bytes.count {
                let piece = ByteBuffer(bytes: bytes[offset..<min(offset + step, bytes.count)])
                offset += step
                try parser.feed(piece) { Self.collect($0, into: &replies[replies.count - 1]) }
            }
        }
        if closeAfter { try parser.connectionClosed { Self.collect($0, into: &replies[replies.count - 1]) } }
        return replies.filter { $0.status != nil }
    }

    static func collect(_ event: SegmentReplyParser.Event, into reply: inout Parsed) {
        switch event {
        case .head(let head, let reusable):
            reply.status = Int(head.status.code)
            reply.reusable = reusable
            for (name, value) in head.headers { reply.headers[name.lowercased()] = value }
        case .body(let chunk):
            reply.body += chunk.readableBytesView
        case .end:
            reply.ended = true
        }
    }

    static let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nLp-Trickle-Seq: 7\r\n\r\n"
        + "1b\r\n{\"type\":\"telemetry\",\"n\":1}\n\r\n" + "5;ext=1\r\nhello\r\n" + "0\r\nX-Trailer: yes\r\n\r\n"

    @Test("a chunked reply: head, every body byte, the end — the same however the bytes are cut")
    func chunkedAnyCut() throws {
        let whole = try Self.parse(Self.chunked)
        #expect(whole.count == 1)
        #expect(whole[0].status == 200)
        #expect(whole[0].reusable == true)
        #expect(whole[0].headers["lp-trickle-seq"] == "7")
        #expect(String(decoding: whole[0].body, as: UTF8.self) == "{\"type\":\"telemetry\",\"n\":1}\nhello")
        #expect(whole[0].ended)
        for cut in 1...40 {
            #expect(try Self.parse(Self.chunked, cut: cut) == whole, "cut every \(cut) bytes")
        }
    }

    @Test("Content-Length bodies, an empty one, 204, and two replies back to back on one connection")
    func fixedLengths() throws {
        for cut in [nil, 1, 3, 7] {
            let replies = try Self.parse(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde",
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
                "HTTP/1.1 204 No Content\r\n\r\n",
                "HTTP/1.0 470 Gone\r\nContent-Length: 2, 2\r\n\r\nok",
                cut: cut
            )
            #expect(replies.map(\.status) == [200, 404, 204, 470])
            #expect(replies.map { String(decoding: $0.body, as: UTF8.self) } == ["abcde", "", "", "ok"])
            #expect(replies.allSatisfy { $0.ended && $0.reusable == true })
        }
    }

    @Test("interim 1xx replies are skipped; a 101 nobody asked for is refused")
    func interimReplies() throws {
        let replies = try Self.parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
        #expect(replies.map(\.status) == [200])
        #expect(replies[0].headers["link"] == nil)
        #expect(throws: SegmentReplyError.self) { try Self.parse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n") }
    }

    @Test("a body without a length runs to the close and leaves the connection unusable; so does chunked beside a length")
    func untilCloseAndConflicts() throws {
        let untilClose = try Self.parse("HTTP/1.1 200 OK\r\n\r\nall of it", cut: 4, closeAfter: true)
        #expect(untilClose.count == 1 && untilClose[0].ended && untilClose[0].reusable == false)
        #expect(String(decoding: untilClose[0].body, as: UTF8.self) == "all of it")
        let smuggled = try Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n")
        #expect(smuggled.count == 1 && smuggled[0].reusable == false && smuggled[0].body == Array("ab".utf8))
        let gzipThenChunked = try Self.parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n")
        #expect(gzipThenChunked.first?.reusable == true && gzipThenChunked.first?.body == Array("z".utf8))
        let chunkedThenGzip = try Self.parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw", closeAfter: true)
        #expect(chunkedThenGzip.first?.reusable == false && chunkedThenGzip.first?.body == Array("raw".utf8))
    }

    @Test(
        "a malformed reply is refused with what was wrong",
        arguments: [
            ("HTTP/2 200 OK\r\n\r\n", "status line"),
            ("HTTP/1.2 200 OK\r\n\r\n", "version"),
            ("HTTP/1.1 2x0 OK\r\n\r\n", "three digits"),
            ("HTTP/1.1 20 OK\r\n\r\n", "three digits"),
            ("HTTP/1.1 099 OK\r\n\r\n", "three digits"),
            ("<html>hello</html>\r\n\r\n", "status line"),
            ("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "no name"),
            ("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", "no name"),
            ("HTTP/1.1 200 OK\r\nA: 1\r\n folded: 2\r\n\r\n", "token"),
            ("HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n", "token"),
            ("HTTP/1.1 200 OK\r\nX: a\u{1}b\r\n\r\n", "control character"),
            ("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "bare CR"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n", "Content-Length"),
            ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "Content-Length"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", "Content-Length"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not hexadecimal"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "not hexadecimal"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", "more than a size"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", "too large"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than its size"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n", "no name"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy", "no request outstanding"),
        ]
    )
    func malformed(reply: String, reason: String) {
        for cut in [nil, 1, 5] {
            do {
                _ = try Self.parse(reply, cut: cut)
                Issue.record("accepted: \(reply.debugDescription)")
            } catch {
                #expect(error.description.contains(reason), "\(error.description) (cut \(cut.map(String.init) ?? "none"))")
                #expect(error.description.hasPrefix("malformed reply from the trickle server"))
            }
        }
    }

    @Test("lines, heads and trailers are bounded: a server that never ends one costs a bounded buffer and an error")
    func bounds() {
        let endlessLine = "HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: SegmentReplyParser.maximumLineBytes + 10)
        #expect(throws: SegmentReplyError.self) { try Self.parse(endlessLine, cut: 1000) }
        let headerFlood = "HTTP/1.1 200 OK\r\n" + String(repeating: "X-A: 0123456789012345678901234567890123456789\r\n", count: 2000)
        #expect(throws: SegmentReplyError.self) { try Self.parse(headerFlood, cut: 4096) }
        let trailerFlood = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
            + String(repeating: "X-T: 0123456789012345678901234567890123456789\r\n", count: 1000)
        #expect(throws: SegmentReplyError.self) { try Self.parse(trailerFlood, cut: 4096) }
        let endlessChunkSize = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + String(repeating: "e", count: 20_000)
        #expect(throws: SegmentReplyError.self) { try Self.parse(endlessChunkSize, cut: 512) }
    }

    @Test("a connection that closes mid-head or mid-body is an error; after a complete reply it is not")
    func closedEarly() throws {
        #expect(throws: SegmentReplyError.self) { try Self.parse("HTTP/1.1 200 OK\r\nContent-", closeAfter: true) }
        #expect(throws: SegmentReplyError.self) { try Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", closeAfter: true) }
        #expect(throws: SegmentReplyError.self) {
            try Self.parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", closeAfter: true)
        }
        let complete = try Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", closeAfter: true)
        #expect(complete.count == 1 && complete[0].ended)
    }
}
