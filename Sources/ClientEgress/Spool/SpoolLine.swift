import NIOCore

/// The spool's line format: `{"seq":<seq>,"line":<line>,"event":<envelope>}` and a newline — JSONL a person can
/// read with `jq`, with the envelope's bytes untouched and its channel position beside it (the spool is also
/// where a restarted client learns how far it had read).
enum SpoolLine {
    private static let seqPrefix = Array(#"{"seq":"#.utf8)
    private static let lineKey = Array(#","line":"#.utf8)
    private static let eventKey = Array(#","event":"#.utf8)

    /// Appends the line for `record` to `buffer`.
    static func write(_ record: TelemetryRecord, into buffer: inout ByteBuffer) {
        buffer.writeBytes(self.seqPrefix)
        buffer.writeString(String(record.seq))
        buffer.writeBytes(self.lineKey)
        buffer.writeString(String(record.lineNumber))
        buffer.writeBytes(self.eventKey)
        buffer.writeImmutableBuffer(record.envelope)
        buffer.writeInteger(UInt8(ascii: "}"))
        buffer.writeInteger(UInt8(ascii: "\n"))
    }

    /// The bytes `write` adds for `record`.
    static func size(of record: TelemetryRecord) -> Int {
        self.seqPrefix.count + self.lineKey.count + self.eventKey.count + 2 + 40 + record.envelope.readableBytes
    }

    /// Reads one line (without its newline) back; `nil` when it is not in the spool's format.
    static func read(_ line: ByteBuffer) -> TelemetryRecord? {
        line.withUnsafeReadableBytes { bytes -> (Int, Int, Range<Int>)? in
            var index = 0
            func expect(_ literal: [UInt8]) -> Bool {
                guard bytes.count - index >= literal.count else { return false }
                for byte in literal {
                    guard bytes[index] == byte else { return false }
                    index += 1
                }
                return true
            }
            func integer() -> Int? {
                var negative = false
                if index < bytes.count, bytes[index] == UInt8(ascii: "-") {
                    negative = true
                    index += 1
                }
                let start = index
                var value = 0
                while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9"), index - start < 18 {
                    value = value * 10 + Int(bytes[index] &- UInt8(ascii: "0"))
                    index += 1
                }
                guard index > start else { return nil }
                return negative ? -value : value
            }
            guard expect(self.seqPrefix), let seq = integer(), expect(self.lineKey), let line = integer(), expect(self.eventKey)
            else { return nil }
            let end = bytes.count - 1
            guard end > index + 1, bytes[end] == UInt8(ascii: "}"), bytes[index] == UInt8(ascii: "{"), bytes[end - 1] == UInt8(ascii: "}")
            else { return nil }
            return (seq, line, index..<end)
        }.map { seq, lineNumber, range in
            TelemetryRecord(envelope: line.getSlice(at: line.readerIndex + range.lowerBound, length: range.count)!, seq: seq, lineNumber: lineNumber)
        }
    }
}
