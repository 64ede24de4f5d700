public import NIOCore
import TrickleRelaySupport

/// Turns the bytes of one segment (or one file) into validated JSON object lines and diagnostics.
///
/// Combines ``JSONLFramer`` with strict validation (``JSONScanner``) and a per-segment byte cap. It reports and
/// goes on: every bad line yields a ``JSONLDiagnostic`` and the next line is read normally. It never buffers
/// more than the cap.
public struct JSONLSegmentParser: Sendable {
    /// What the parser produces.
    public enum Item: Sendable {
        case line(JSONLLine)
        case diagnostic(JSONLDiagnostic)
    }

    private var framer: JSONLFramer
    private let maximumSegmentBytes: Int
    private let validatesObjects: Bool
    private var source: String
    private var seq: Int
    private var segmentBytes = 0
    private var frames: [JSONLFramer.Frame] = []

    /// Creates a parser.
    ///
    /// - Parameters:
    ///   - source: The channel or file name, for diagnostics.
    ///   - seq: The segment seq (`-1` for a file).
    ///   - maximumSegmentBytes: The segment cap (`Int.max` for a file); also the line cap.
    ///   - maximumLineBytes: The line cap; defaults to the segment cap.
    ///   - validatesObjects: Whether each line is checked to be a strict JSON object (default). Turn it off
    ///     when the consumer scans lines itself anyway.
    public init(
        source: String,
        seq: Int,
        maximumSegmentBytes: Int,
        maximumLineBytes: Int? = nil,
        validatesObjects: Bool = true
    ) {
        self.framer = JSONLFramer(maximumLineBytes: maximumLineBytes ?? maximumSegmentBytes)
        self.maximumSegmentBytes = maximumSegmentBytes
        self.validatesObjects = validatesObjects
        self.source = source
        self.seq = seq
    }

    /// Starts a new segment: a partial line of the previous one is dropped (lines never join across segments).
    public mutating func startSegment(seq: Int) {
        self.framer.reset()
        self.seq = seq
        self.segmentBytes = 0
    }

    /// Whether the segment went over the cap (its remaining bytes are ignored).
    public var isOverLimit: Bool { self.segmentBytes > self.maximumSegmentBytes }

    /// Feeds bytes of the current segment and appends what they complete.
    public mutating func feed(_ chunk: ByteBuffer, into items: inout [Item]) {
        guard !self.isOverLimit else { return }
        var chunk = chunk
        self.segmentBytes += chunk.readableBytes
        if self.isOverLimit {
            // Keep only what fits; the rest of the segment is skipped and reported.
            let room = chunk.readableBytes - (self.segmentBytes - self.maximumSegmentBytes)
            chunk = chunk.readSlice(length: max(room, 0)) ?? ByteBuffer()
        }
        self.framer.feed(chunk, into: &self.frames)
        self.drainFrames(into: &items)
        if self.isOverLimit {
            self.framer.reset()
            items.append(
                .diagnostic(
                    JSONLDiagnostic(
                        reason: .segmentTooLarge,
                        source: self.source,
                        seq: self.seq,
                        lineNumber: nil,
                        bytes: self.segmentBytes,
                        detail: "segment exceeds \(self.maximumSegmentBytes) bytes; the rest of it was skipped"
                    )
                )
            )
        }
    }

    /// Marks the segment over the cap from outside (the subscriber cut it), reporting it once.
    public mutating func noteSegmentOverLimit(bytes: Int, into items: inout [Item]) {
        guard !self.isOverLimit else { return }
        self.segmentBytes = max(bytes, self.maximumSegmentBytes + 1)
        self.framer.reset()
        items.append(
            .diagnostic(
                JSONLDiagnostic(
                    reason: .segmentTooLarge,
                    source: self.source,
                    seq: self.seq,
                    lineNumber: nil,
                    bytes: bytes,
                    detail: "segment exceeds \(self.maximumSegmentBytes) bytes; the rest of it was skipped"
                )
            )
        )
    }

    /// Ends the current segment: an unterminated last line is delivered if it is valid, else reported as
    /// truncated.
    public mutating func finishSegment(into items: inout [Item]) {
        if !self.isOverLimit {
            self.framer.finish(into: &self.frames)
            self.drainFrames(into: &items)
        }
        self.framer.reset()
    }

    private mutating func drainFrames(into items: inout [Item]) {
        for frame in self.frames {
            switch frame {
            case .oversizeLine(let number, let bytes):
                items.append(
                    .diagnostic(
                        JSONLDiagnostic(
                            reason: .lineTooLarge,
                            source: self.source,
                            seq: self.seq,
                            lineNumber: number,
                            bytes: bytes,
                            detail: "line exceeds \(self.framer.maximumLineBytes) bytes"
                        )
                    )
                )
            case .line(let bytes, let number, let isTerminated):
                // A whitespace-only line (e.g. a stray "\r") carries nothing, like an empty one: skipped silently
                // (the SDK's reader errors on it, §8; we treat it as the blank line it is).
                if Self.isBlank(bytes) { continue }
                if let diagnostic = self.validate(bytes, number: number, isTerminated: isTerminated) {
                    items.append(.diagnostic(diagnostic))
                } else {
                    items.append(.line(JSONLLine(bytes: bytes, seq: self.seq, lineNumber: number)))
                }
            }
        }
        self.frames.removeAll(keepingCapacity: true)
    }

    /// Whether a line holds only JSON whitespace (cheap: only a line that starts with whitespace is looked at).
    static func isBlank(_ line: ByteBuffer) -> Bool {
        guard let first = line.getInteger(at: line.readerIndex, as: UInt8.self), first == 0x20 || first == 0x09 || first == 0x0D
        else { return false }
        return line.readableBytesView.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }

    private func validate(_ line: ByteBuffer, number: Int, isTerminated: Bool) -> JSONLDiagnostic? {
        // Without object validation (the dispatcher validates in its own pass) only the segment's unterminated
        // last line is checked here: only this parser knows it was cut short (§7), so it says "truncated".
        guard self.validatesObjects || !isTerminated else { return nil }
        let result: Result<JSONScanner.ValueKind, JSONSyntaxError>? = line.withUnsafeReadableBytes { bytes in
            do throws(JSONSyntaxError) {
                return .success(try JSONScanner.validate(bytes))
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case nil, .success(.object):
            return nil
        case .success where !self.validatesObjects:
            return nil  // the dispatcher reports non-objects itself
        case .success(let kind):
            return JSONLDiagnostic(
                reason: .notAnObject,
                source: self.source,
                seq: self.seq,
                lineNumber: number,
                bytes: line.readableBytes,
                detail: "expected a JSON object, got \(kind)"
            )
        case .failure(let error):
            return JSONLDiagnostic(
                reason: !isTerminated ? .truncatedLine : error.isInvalidUTF8 ? .invalidUTF8 : .malformedJSON,
                source: self.source,
                seq: self.seq,
                lineNumber: number,
                bytes: line.readableBytes,
                detail: error.description
            )
        }
    }
}
