import NIOCore
import NIOHTTP1
import TrickleProtocol
import TrickleRelaySupport

/// The subscriber's HTTP/1.1 reply parser under arbitrary bytes, as a trickle server's reply after a status line
/// and a header block the fuzzer also writes. Invariants: it either parses or throws (never traps); the result is
/// independent of how the bytes are cut; the body handed on is never more than the bytes fed; lines are bounded.
struct SegmentReplyFuzzCase {
    let reply: [UInt8]
    let cut: Int

    init(input: [UInt8]) {
        self.cut = Int(input[0]) % 17 + 1
        // Half the inputs start from a valid chunked head, so the fuzzer reaches the body states quickly.
        let prefix = input[0] & 0x80 == 0 ? Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8) : []
        self.reply = prefix + Array(input.dropFirst())
    }

    /// The events and how parsing ended, with body bytes joined (their cut depends on the input's cut).
    struct Outcome: Equatable {
        var heads: [Int] = []
        var body: [UInt8] = []
        var ends = 0
        var error: String?
    }

    func check() {
        let whole = Self.parse([self.reply])
        let pieces = stride(from: 0, to: self.reply.count, by: self.cut).map { Array(self.reply[$0..<min($0 + self.cut, self.reply.count)]) }
        let cut = Self.parse(pieces)
        fuzzRequire(whole.heads == cut.heads && whole.body == cut.body && whole.ends == cut.ends, "cutting every \(self.cut) bytes changed the parse")
        fuzzRequire((whole.error == nil) == (cut.error == nil), "cutting changed whether the reply parses: \(whole.error ?? "-") / \(cut.error ?? "-")")
        fuzzRequire(whole.body.count <= self.reply.count, "more body than bytes")
        fuzzRequire(whole.ends <= 1, "one request, \(whole.ends) replies ended")
    }

    static func parse(_ pieces: [[UInt8]]) -> Outcome {
        var parser = SegmentReplyParser()
        parser.expectReply()
        var outcome = Outcome()
        func collect(_ event: SegmentReplyParser.Event) {
            switch event {
            case .head(let head, _): outcome.heads.append(Int(head.status.code))
            case .body(let chunk): outcome.body += chunk.readableBytesView
            case .end: outcome.ends += 1
            }
        }
        do {
            for piece in pieces { try parser.feed(ByteBuffer(bytes: piece), emit: collect) }
            try parser.connectionClosed(emit: collect)
        } catch {
            outcome.error = error.description
        }
        return outcome
    }
}
