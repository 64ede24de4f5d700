/// A copy of some bytes with non-overlapping ranges, in increasing order, replaced by redaction markers; the
/// bytes themselves (no copy) when nothing was replaced.
struct RedactedCopy {
    private let bytes: [UInt8]
    private var output: [UInt8] = []
    private var copied = 0
    /// Ranges replaced so far.
    private(set) var count = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Replaces `range` (at or after the end of the previous one) with the marker of `kind`.
    mutating func replace(_ range: Range<Int>, with kind: Scrubber.Kind) {
        self.output.append(contentsOf: self.bytes[self.copied..<range.lowerBound])
        self.output.append(contentsOf: Scrubber.marker(kind))
        self.copied = range.upperBound
        self.count += 1
    }

    /// The bytes with every replacement made.
    var result: [UInt8] {
        guard self.count > 0 else { return self.bytes }
        return self.output + self.bytes[self.copied...]
    }
}
