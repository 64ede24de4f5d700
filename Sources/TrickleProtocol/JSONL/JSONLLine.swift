public import NIOCore
import TrickleRelaySupport

/// One JSON object line read from an events channel.
public struct JSONLLine: Sendable {
    /// The line's bytes, without the newline: exactly as the publisher sent them.
    public var bytes: ByteBuffer
    /// The segment it came in (`-1` when not read from a channel, e.g. a file).
    public var seq: Int
    /// Its line number within the segment (or file), from 1.
    public var lineNumber: Int

    public init(bytes: ByteBuffer, seq: Int, lineNumber: Int) {
        self.bytes = bytes
        self.seq = seq
        self.lineNumber = lineNumber
    }
}

/// Something wrong in the stream that a reader reported and skipped (DESIGN.md "Bad input").
public struct JSONLDiagnostic: Sendable, Hashable, CustomStringConvertible {
    /// Why the line or segment was skipped.
    public struct Reason: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case malformedJSON = "malformed_json"
            case notAnObject = "not_an_object"
            case lineTooLarge = "line_too_large"
            case segmentTooLarge = "segment_too_large"
            case truncatedLine = "truncated_line"
            case invalidUTF8 = "invalid_utf8"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The line is not valid (strict) JSON.
        public static let malformedJSON = Reason(.malformedJSON)
        /// The line is valid JSON but not an object.
        public static let notAnObject = Reason(.notAnObject)
        /// The line is longer than the cap; it was skipped without being buffered.
        public static let lineTooLarge = Reason(.lineTooLarge)
        /// The segment is larger than the cap; its lines after the cap were skipped.
        public static let segmentTooLarge = Reason(.segmentTooLarge)
        /// The segment ended in the middle of a line that is not valid JSON (cut short, §7).
        public static let truncatedLine = Reason(.truncatedLine)
        /// The line is JSON but a string in it holds ill-formed UTF-8 (a strict endpoint would refuse it).
        public static let invalidUTF8 = Reason(.invalidUTF8)

        /// A stable snake_case name, for summaries and metrics.
        public var description: String { self.base.rawValue }
    }

    /// Why it was skipped.
    public var reason: Reason
    /// The channel name (or file name) it came from.
    public var source: String
    /// The segment (`-1` when not from a channel).
    public var seq: Int
    /// The line number within the segment or file, when the diagnostic is about a line.
    public var lineNumber: Int?
    /// The size in bytes of the offending line or segment.
    public var bytes: Int
    /// Details, e.g. the JSON syntax error.
    public var detail: String

    public init(reason: Reason, source: String, seq: Int, lineNumber: Int?, bytes: Int, detail: String) {
        self.reason = reason
        self.source = source
        self.seq = seq
        self.lineNumber = lineNumber
        self.bytes = bytes
        self.detail = detail
    }

    public var description: String {
        var text = "\(self.reason) in \(self.source)"
        if self.seq >= 0 { text += " seq \(self.seq)" }
        if let lineNumber { text += " line \(lineNumber)" }
        text += " (\(self.bytes) bytes)"
        if !self.detail.isEmpty { text += ": \(self.detail)" }
        return text
    }
}
