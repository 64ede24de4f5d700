import TrickleRelaySupport
package import NIOCore
package import NIOHTTP1

/// Parses the HTTP/1.1 replies a ``SegmentConnection`` reads: a status line and headers, then a body framed by
/// `Transfer-Encoding: chunked`, `Content-Length`, or the end of the connection (RFC 9112 §4–§7).
///
/// Why its own parser: at a thousand followed channels every event is its own socket read, and NIOHTTP1's decoder
/// (a byte-to-message handler around llhttp) was a tenth of the daemon's CPU for the few bytes of chunk framing
/// around each line. This one hands body bytes on as slices of the buffer read from the socket, and only a reply
/// that breaks the grammar or a bound costs more than a scan for the next line end.
///
/// Every byte is hostile: line, head and trailer sizes are bounded, numbers are parsed with checked arithmetic
/// (`Content-Length` in decimal, chunk sizes in hexadecimal, both at most 2⁶⁰ − 1), conflicting or malformed
/// framing is an error, and a reply whose framing could let the next one be misread (`Transfer-Encoding` beside
/// `Content-Length`, a body that ends with the connection) is marked not reusable.
package struct SegmentReplyParser {
    /// What the bytes fed so far produced, in order.
    package enum Event {
        /// The final reply's head (interim 1xx replies are skipped); `reusable` is whether its framing lets the
        /// connection carry another request once the reply ended (keep-alive is decided by the caller).
        case head(HTTPResponseHead, reusable: Bool)
        case body(ByteBuffer)
        case end
    }

    /// The longest line (status line, header, chunk size with extensions, trailer) accepted.
    package static let maximumLineBytes = 8 * 1024
    /// The largest head (status line and headers) accepted.
    package static let maximumHeadBytes = 64 * 1024
    /// The largest trailer section accepted.
    package static let maximumTrailerBytes = 16 * 1024
    /// The largest number a `Content-Length` or a chunk size may hold (2⁶⁰ − 1: never near overflow).
    static let maximumLength = (1 << 60) - 1

    private enum State {
        /// No request outstanding: any byte is out of step.
        case idle
        /// Reading a head: status line first, then header lines.
        case head(HTTPResponseHead?, bytes: Int)
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        /// The CRLF after a chunk's data.
        case chunkDataEnd
        case trailers(bytes: Int)
        case untilClose
    }

    private var state = State.idle
    /// The start of a line split across reads.
    private var partialLine: ByteBuffer?

    package init() {}

    /// Expects a reply (after a request was written).
    package mutating func expectReply() {
        self.state = .head(nil, bytes: 0)
        self.partialLine = nil
    }

    /// Parses `bytes`, emitting what they complete.
    ///
    /// - Throws: ``SegmentReplyError`` when the reply breaks the grammar or a bound, or bytes arrive while no reply
    ///   is expected; the connection is then unusable.
    package mutating func feed(_ bytes: ByteBuffer, emit: (Event) -> Void) throws(SegmentReplyError) {
        var input = bytes
        while input.readableBytes > 0 {
            switch self.state {
            case .idle:
                throw SegmentReplyError("\(input.readableBytes) bytes arrived with no request outstanding")
            case .fixedBody(let remaining):
                let slice = input.readSlice(length: min(remaining, input.readableBytes))!
                emit(.body(slice))
                if remaining == slice.readableBytes {
                    self.finishReply(emit)
                } else {
                    self.state = .fixedBody(remaining: remaining - slice.readableBytes)
                }
            case .chunkData(let remaining):
                let slice = input.readSlice(length: min(remaining, input.readableBytes))!
                emit(.body(slice))
                self.state = remaining == slice.readableBytes ? .chunkDataEnd : .chunkData(remaining: remaining - slice.readableBytes)
            case .untilClose:
                emit(.body(input))
                return
            case .head, .chunkSize, .chunkDataEnd, .trailers:
                guard let line = try self.nextLine(from: &input) else { return }
                try self.take(line: line, emit: emit)
            }
        }
    }

    /// The connection closed: a body that runs to the close ends here; any other reply was cut short.
    ///
    /// - Throws: ``SegmentReplyError`` when a reply was being read and its framing says it was not complete.
    package mutating func connectionClosed(emit: (Event) -> Void) throws(SegmentReplyError) {
        switch self.state {
        case .idle:
            return
        case .untilClose:
            self.finishReply(emit)
        case .head:
            self.state = .idle
            throw SegmentReplyError("the connection closed before the reply head was complete")
        default:
            self.state = .idle
            throw SegmentReplyError("the connection closed before the reply body was complete")
        }
    }

    // MARK: Lines

    /// The next whole line (without its line end), or `nil` when `input` ends inside one (kept for the next read).
    private mutating func nextLine(from input: inout ByteBuffer) throws(SegmentReplyError) -> ByteBuffer? {
        let view = input.readableBytesView
        guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if self.partialLine == nil {
                self.partialLine = input
            } else {
                self.partialLine!.writeImmutableBuffer(input)
            }
            input.moveReaderIndex(to: input.writerIndex)
            guard self.partialLine!.readableBytes <= Self.maximumLineBytes + 1 else {  // + the CR of its line end
                throw SegmentReplyError("a line of the reply is longer than \(Self.maximumLineBytes) bytes")
            }
            return nil
        }
        var line = input.readSlice(length: newline - view.startIndex + 1)!
        if var partial = self.partialLine {
            self.partialLine = nil
            partial.writeBuffer(&line)
            line = partial
        }
        guard line.readableBytes <= Self.maximumLineBytes + 2 else {
            throw SegmentReplyError("a line of the reply is longer than \(Self.maximumLineBytes) bytes")
        }
        // Drop the LF and a CR before it; a CR anywhere else is not allowed in a line.
        line.moveWriterIndex(to: line.writerIndex - 1)
        if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
        guard !line.readableBytesView.contains(UInt8(ascii: "\r")) else {
            throw SegmentReplyError("a bare CR inside a line of the reply")
        }
        return line
    }

    private mutating func take(line: ByteBuffer, emit: (Event) -> Void) throws(SegmentReplyError) {
        switch self.state {
        case .head(let head, let bytes):
            let total = bytes + line.readableBytes + 2
            guard total <= Self.maximumHeadBytes else {
                throw SegmentReplyError("the reply head is longer than \(Self.maximumHeadBytes) bytes")
            }
            guard var head else {
                self.state = .head(try Self.statusLine(line), bytes: total)
                return
            }
            self.state = .idle  // the head is mutated below: not shared with the state meanwhile
            if line.readableBytes > 0 {
                let (name, value) = try Self.headerField(line)
                head.headers.add(name: name, value: value)
                self.state = .head(head, bytes: total)
            } else {
                try self.headEnded(head, emit: emit)
            }
        case .chunkSize:
            let size = try Self.chunkSize(line)
            self.state = size == 0 ? .trailers(bytes: 0) : .chunkData(remaining: size)
        case .chunkDataEnd:
            guard line.readableBytes == 0 else { throw SegmentReplyError("chunk data longer than its size") }
            self.state = .chunkSize
        case .trailers(let bytes):
            if line.readableBytes == 0 {
                self.finishReply(emit)
                return
            }
            let total = bytes + line.readableBytes + 2
            guard total <= Self.maximumTrailerBytes else {
                throw SegmentReplyError("the reply's trailers are longer than \(Self.maximumTrailerBytes) bytes")
            }
            _ = try Self.headerField(line)  // validated, not used
            self.state = .trailers(bytes: total)
        case .idle, .fixedBody, .chunkData, .untilClose:
            preconditionFailure("not a line state")  // feed(_:emit:) routes only line states here
        }
    }

    private mutating func finishReply(_ emit: (Event) -> Void) {
        self.state = .idle
        emit(.end)
    }

    // MARK: Head

    private mutating func headEnded(_ head: HTTPResponseHead, emit: (Event) -> Void) throws(SegmentReplyError) {
        let code = head.status.code
        if (100..<200).contains(code) {
            // An interim reply (100, 103, …): the final one follows. We never ask to switch protocols.
            guard code != 101 else { throw SegmentReplyError("the server switched protocols unasked") }
            self.state = .head(nil, bytes: 0)
            return
        }
        let transferCodings = head.headers[canonicalForm: "transfer-encoding"]
        let lengths = head.headers[canonicalForm: "content-length"]
        if code == 204 || code == 304 {
            emit(.head(head, reusable: true))
            self.finishReply(emit)
        } else if !transferCodings.isEmpty {
            // Chunked only as the final coding; with anything after it, or with a Content-Length beside it, the
            // body still parses but the connection is not trusted with another request (RFC 9112 §6.1, §6.3).
            let isChunked = transferCodings.last?.lowercased() == "chunked"
            emit(.head(head, reusable: isChunked && lengths.isEmpty))
            self.state = isChunked ? .chunkSize : .untilClose
        } else if let first = lengths.first {
            guard let length = Self.decimal(first), lengths.allSatisfy({ Self.decimal($0) == length }) else {
                throw SegmentReplyError("Content-Length is not one non-negative number: \(lengths.joined(separator: ", ").prefix(64))")
            }
            emit(.head(head, reusable: true))
            if length == 0 {
                self.finishReply(emit)
            } else {
                self.state = .fixedBody(remaining: length)
            }
        } else {
            emit(.head(head, reusable: false))
            self.state = .untilClose
        }
    }

    /// `HTTP/1.x SP 3DIGIT [SP reason]`.
    private static func statusLine(_ line: ByteBuffer) throws(SegmentReplyError) -> HTTPResponseHead {
        let bytes = line.readableBytesView
        guard bytes.count >= 12, bytes.starts(with: "HTTP/1.".utf8) else {
            throw SegmentReplyError("the reply does not start with an HTTP/1.x status line")
        }
        let start = bytes.startIndex
        let minor = bytes[start + 7]
        guard minor == UInt8(ascii: "0") || minor == UInt8(ascii: "1"), bytes[start + 8] == UInt8(ascii: " ") else {
            throw SegmentReplyError("the reply's HTTP version is not 1.0 or 1.1")
        }
        var code = 0
        for index in (start + 9)..<(start + 12) {
            let digit = bytes[index]
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else {
                throw SegmentReplyError("the reply's status code is not three digits")
            }
            code = code * 10 + Int(digit - UInt8(ascii: "0"))
        }
        guard code >= 100, bytes.count == 12 || bytes[start + 12] == UInt8(ascii: " ") else {
            throw SegmentReplyError("the reply's status code is not three digits")
        }
        let version: HTTPVersion = minor == UInt8(ascii: "1") ? .http1_1 : .http1_0
        return HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: code))
    }

    /// `token ":" OWS value OWS`, the value free of control characters but HTAB.
    private static func headerField(_ line: ByteBuffer) throws(SegmentReplyError) -> (String, String) {
        let bytes = line.readableBytesView
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")), colon > bytes.startIndex else {
            throw SegmentReplyError("a header line of the reply has no name")
        }
        guard bytes[bytes.startIndex..<colon].allSatisfy(Self.isTokenCharacter) else {
            // Including a line folded onto the previous one (starting with a space): obsolete, refused.
            throw SegmentReplyError("a header name of the reply holds a character a token may not")
        }
        var valueStart = colon + 1
        var valueEnd = bytes.endIndex
        while valueStart < valueEnd, bytes[valueStart] == UInt8(ascii: " ") || bytes[valueStart] == UInt8(ascii: "\t") {
            valueStart += 1
        }
        while valueEnd > valueStart, bytes[valueEnd - 1] == UInt8(ascii: " ") || bytes[valueEnd - 1] == UInt8(ascii: "\t") {
            valueEnd -= 1
        }
        guard bytes[valueStart..<valueEnd].allSatisfy({ $0 >= 0x20 && $0 != 0x7F || $0 == UInt8(ascii: "\t") }) else {
            throw SegmentReplyError("a header value of the reply holds a control character")
        }
        return (String(decoding: bytes[bytes.startIndex..<colon], as: UTF8.self), String(decoding: bytes[valueStart..<valueEnd], as: UTF8.self))
    }

    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// A decimal `Content-Length` (digits only), or `nil`.
    private static func decimal(_ text: Substring) -> Int? {
        var value = 0
        var digits = 0
        for byte in text.utf8 {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let digit = Int(byte - UInt8(ascii: "0"))
            guard value <= (Self.maximumLength - digit) / 10 else { return nil }
            value = value * 10 + digit
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    /// `1*HEXDIG [BWS ";" extensions]`: the size; extensions are ignored.
    private static func chunkSize(_ line: ByteBuffer) throws(SegmentReplyError) -> Int {
        var size = 0
        var digits = 0
        var rest = line.readableBytesView[...]
        while let byte = rest.first {
            let value: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(byte - UInt8(ascii: "A")) + 10
            default: value = -1
            }
            guard value >= 0 else { break }
            guard size <= Self.maximumLength >> 4 else { throw SegmentReplyError("a chunk size of the reply is too large") }
            size = size << 4 | value
            digits += 1
            rest = rest.dropFirst()
        }
        guard digits > 0 else { throw SegmentReplyError("a chunk size line of the reply is not hexadecimal") }
        while let byte = rest.first, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { rest = rest.dropFirst() }
        guard rest.isEmpty || rest.first == UInt8(ascii: ";") else {
            throw SegmentReplyError("a chunk size line of the reply holds more than a size and extensions")
        }
        return size
    }
}

/// A reply a ``SegmentConnection`` cannot read: what was wrong with it (never its bytes).
package struct SegmentReplyError: Error, Hashable, CustomStringConvertible {
    package var description: String

    init(_ description: String) {
        self.description = "malformed reply from the trickle server: \(description)"
    }
}
