public import NIOCore
import TrickleRelaySupport

/// Splits a byte stream into lines incrementally, never holding more than `maximumLineBytes` of one line.
///
/// Bytes are fed as they arrive; complete lines come out at once (zero-copy slices when a line lies within one
/// chunk). A line longer than the limit is not buffered: the framer skips to its newline and reports it as
/// ``Frame/oversizeLine(number:bytes:)``. A trailing `\r` is dropped (CRLF input). Zero-length lines are
/// skipped but still counted, so line numbers match the input.
public struct JSONLFramer: Sendable {
    /// What the framer produces.
    public enum Frame: Sendable {
        /// A complete line (without its newline); `isTerminated` is `false` only for a tail flushed by
        /// ``finish(into:)``, which may be truncated.
        case line(ByteBuffer, number: Int, isTerminated: Bool)
        /// A line over the limit, skipped; `bytes` is its full length.
        case oversizeLine(number: Int, bytes: Int)
    }

    /// The largest line kept.
    public let maximumLineBytes: Int
    private var pending: ByteBuffer?
    /// Whether `pending` is a buffer of the framer's own (not a slice of a chunk), so it grows in place.
    private var pendingIsOwn = false
    private var pendingBytes = 0
    private var discarding = false
    private var lineNumber = 1

    /// Creates a framer.
    public init(maximumLineBytes: Int) {
        self.maximumLineBytes = maximumLineBytes
    }

    /// The number of the line being assembled (1-based).
    public var currentLineNumber: Int { self.lineNumber }

    /// Feeds a chunk and appends every frame it completes.
    public mutating func feed(_ chunk: ByteBuffer, into frames: inout [Frame]) {
        var chunk = chunk
        while chunk.readableBytes > 0 {
            let newline: Int? = chunk.withUnsafeReadableBytes { bytes in
                guard let base = bytes.baseAddress, bytes.count > 0,
                    let found = memchr(base, 0x0A, bytes.count)
                else { return nil }
                return base.distance(to: UnsafeRawPointer(found))
            }
            guard let newline else {
                // Only the unread bytes: the chunk itself spans its whole storage, and appending the next chunk's
                // head to it would copy everything before its reader index too (a whole chunk per chunk).
                self.accumulate(chunk.slice())
                return
            }
            let piece = chunk.readSlice(length: newline)!  // newline < readableBytes
            chunk.moveReaderIndex(forwardBy: 1)
            self.accumulate(piece)
            self.endLine(isTerminated: true, into: &frames)
        }
    }

    /// Flushes an unterminated tail at the end of the stream (or segment), and resets line numbering.
    public mutating func finish(into frames: inout [Frame]) {
        if self.pendingBytes > 0 || self.discarding {
            self.endLine(isTerminated: false, into: &frames)
        }
        self.reset()
    }

    /// Drops any partial line and restarts at line 1 (a new segment: lines never join across segments).
    public mutating func reset() {
        self.pending = nil
        self.pendingBytes = 0
        self.discarding = false
        self.lineNumber = 1
    }

    private mutating func accumulate(_ piece: ByteBuffer) {
        guard piece.readableBytes > 0 else { return }
        self.pendingBytes += piece.readableBytes
        if self.discarding { return }
        if self.pendingBytes > self.maximumLineBytes {
            self.discarding = true
            self.pending = nil
            return
        }
        if var pending = self.pending {
            // A line across chunks: a buffer of its own (the first piece is a slice of a chunk other lines share,
            // so appending to it in place would copy that chunk), then grown in place — by doubling, so a long line
            // in many small reads costs linear time.
            self.pending = nil
            if !self.pendingIsOwn {
                var own = ByteBufferAllocator().buffer(capacity: max(pending.readableBytes + piece.readableBytes, 2 * pending.readableBytes))
                own.writeImmutableBuffer(pending)
                pending = own
                self.pendingIsOwn = true
            }
            pending.writeImmutableBuffer(piece)
            self.pending = pending
        } else {
            self.pending = piece
            self.pendingIsOwn = false
        }
    }

    private mutating func endLine(isTerminated: Bool, into frames: inout [Frame]) {
        defer {
            self.pending = nil
            self.pendingBytes = 0
            self.discarding = false
            self.lineNumber += 1
        }
        if self.discarding {
            frames.append(.oversizeLine(number: self.lineNumber, bytes: self.pendingBytes))
            return
        }
        guard var line = self.pending else { return }
        if line.readableBytes > 0, line.getInteger(at: line.writerIndex - 1, as: UInt8.self) == 0x0D {
            line.moveWriterIndex(to: line.writerIndex - 1)
        }
        guard line.readableBytes > 0 else { return }
        frames.append(.line(line, number: self.lineNumber, isTerminated: isTerminated))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
