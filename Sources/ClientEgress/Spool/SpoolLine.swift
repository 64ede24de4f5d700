import NIOCore

/// The spool's line format: `{"sub":"<subscription>","seq":<seq>,"line":<line>,"event":<envelope>}` and a
/// newline — JSONL a person can read with `jq`, with the envelope's bytes untouched and its channel position
/// beside it (the spool is also where a restarted daemon learns how far it had read each channel). Records
/// without a subscription (a single-channel client) leave `"sub"` out: `{"seq":…,"line":…,"event":…}`, the
/// format of earlier versions, which is still read.
enum SpoolLine {
    private static let subscriptionPrefix = Array(#"{"sub":""#.utf8)
    private static let subscriptionEnd = Array(#"","seq":"#.utf8)
    private static let seqPrefix = Array(#"{"seq":"#.utf8)
    private static let lineKey = Array(#","line":"#.utf8)
    private static let eventKey = Array(#","event":"#.utf8)

    /// Appends the line for `record` to `buffer`. The subscription id is written as is: ids are checked to be
    /// `[A-Za-z0-9._-]` when a subscription is made (``SubscriptionID``), so it never needs escaping.
    static func write(_ record: TelemetryRecord, into buffer: inout ByteBuffer) {
        if record.subscription.isEmpty {
            buffer.writeBytes(self.seqPrefix)
        } else {
            buffer.writeBytes(self.subscriptionPrefix)
            buffer.writeString(record.subscription)
            buffer.writeBytes(self.subscriptionEnd)
        }
        buffer.writeString(String(record.seq))
        buffer.writeBytes(self.lineKey)
        buffer.writeString(String(record.lineNumber))
        buffer.writeBytes(self.eventKey)
        buffer.writeImmutableBuffer(record.envelope)
        buffer.writeInteger(UInt8(ascii: "}"))
        buffer.writeInteger(UInt8(ascii: "\n"))
    }

    /// The bytes `write` adds for `record` (at most).
    static func size(of record: TelemetryRecord) -> Int {
        self.subscriptionPrefix.count + self.subscriptionEnd.count + record.subscription.utf8.count + self.lineKey.count
            + self.eventKey.count + 2 + 40 + record.envelope.readableBytes
    }

    /// Reads one line (without its newline) back; `nil` when it is not in the spool's format.
    static func read(_ line: ByteBuffer) -> TelemetryRecord? {
        line.withUnsafeReadableBytes { bytes -> (Range<Int>?, Int, Int, Range<Int>)? in
            var index = 0
            func expect(_ literal: [UInt8]) -> Bool {
                guard bytes.count - index >= literal.count else { return false }
                for (offset, byte) in literal.enumerated() where bytes[index + offset] != byte { return false }
                index += literal.count
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
            var subscription: Range<Int>?
            if expect(self.subscriptionPrefix) {
                let start = index
                while index < bytes.count, SubscriptionID.isAllowed(bytes[index]), index - start < SubscriptionID.maximumLength { index += 1 }
                guard index > start else { return nil }
                subscription = start..<index
                guard expect(self.subscriptionEnd) else { return nil }
            } else {
                guard expect(self.seqPrefix) else { return nil }
            }
            guard let seq = integer(), expect(self.lineKey), let line = integer(), expect(self.eventKey) else { return nil }
            let end = bytes.count - 1
            guard end > index + 1, bytes[end] == UInt8(ascii: "}"), bytes[index] == UInt8(ascii: "{"), bytes[end - 1] == UInt8(ascii: "}")
            else { return nil }
            return (subscription, seq, line, index..<end)
        }.map { subscription, seq, lineNumber, range in
            TelemetryRecord(
                envelope: line.getSlice(at: line.readerIndex + range.lowerBound, length: range.count)!,
                seq: seq,
                lineNumber: lineNumber,
                subscription: subscription.map { line.getString(at: line.readerIndex + $0.lowerBound, length: $0.count)! } ?? ""
            )
        }
    }
}
