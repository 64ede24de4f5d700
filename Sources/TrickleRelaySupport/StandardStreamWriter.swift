#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Writes whole records to standard output or standard error with `write(2)`.
///
/// A reader that went away (`EPIPE`: `trickle-relay subscribe … | head -n 1`), or any other write error, closes the
/// stream for good instead of trapping: `write` answers `false` from then on, and the caller decides what a closed
/// stream means (`subscribe` ends quietly, the client stops printing and goes on delivering). Short writes and
/// `EINTR` are retried, and one lock keeps concurrent writers' records whole.
public final class StandardStreamWriter: Sendable {
    /// File descriptor 1.
    public static let standardOutput = StandardStreamWriter(descriptor: 1)
    /// File descriptor 2.
    public static let standardError = StandardStreamWriter(descriptor: 2)

    private let descriptor: Int32
    /// `nil` while open; the `errno` that closed it.
    private let closedBy: RelayMutex<Int32?>

    public init(descriptor: Int32) {
        self.descriptor = descriptor
        self.closedBy = RelayMutex(nil)
    }

    /// Whether a write failed (the reader went away, or the output is unusable).
    public var isClosed: Bool { self.closedBy.withLock { $0 != nil } }

    /// The `errno` of the write that closed the stream, if one did.
    public var closingError: Int32? { self.closedBy.withLock { $0 } }

    /// Writes `bytes` whole, or not at all once the stream is closed.
    ///
    /// - Returns: `false` when the stream is (or just became) closed.
    @discardableResult
    public func write(_ bytes: some Collection<UInt8>) -> Bool {
        self.closedBy.withLock { closedBy in
            guard closedBy == nil else { return false }
            let failure: Int32? = bytes.withContiguousStorageIfAvailable { Self.writeAll($0, to: self.descriptor) }
                ?? Array(bytes).withUnsafeBufferPointer { Self.writeAll($0, to: self.descriptor) }
            closedBy = failure
            return failure == nil
        }
    }

    /// Writes `text` as UTF-8.
    @discardableResult
    public func write(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { self.write($0) }
    }

    /// `nil` when every byte was written, else the `errno` that stopped it.
    private static func writeAll(_ buffer: UnsafeBufferPointer<UInt8>, to descriptor: Int32) -> Int32? {
        guard var next = buffer.baseAddress else { return nil }
        var remaining = buffer.count
        while remaining > 0 {
            #if canImport(Glibc)
            let written = Glibc.write(descriptor, next, remaining)
            #else
            let written = Darwin.write(descriptor, next, remaining)
            #endif
            if written > 0 {
                next += written
                remaining -= written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                return written < 0 ? errno : EIO
            }
        }
        return nil
    }
}
