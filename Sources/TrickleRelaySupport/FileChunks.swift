#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import NIOCore
import NIOPosix

/// Reads a file descriptor as `ByteBuffer` chunks without blocking the concurrency pool: each `read(2)` runs on
/// NIO's blocking thread pool, so regular files, pipes and terminals all work. Cancellation stops it between
/// chunks (a read in flight on a regular file is short). A failing read throws, naming `errno`, instead of
/// looking like the end of the file.
public struct FileChunks: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    /// A read that failed.
    public struct ReadError: Error, Sendable, CustomStringConvertible {
        public var errno: Int32
        public var description: String { "read failed: \(String(cString: strerror(self.errno)))" }
    }

    public var descriptor: Int32
    public var chunkSize: Int

    /// - Parameters:
    ///   - descriptor: An open descriptor the caller owns (and closes).
    ///   - chunkSize: The most bytes per chunk; default 64 KiB.
    public init(descriptor: Int32 = 0, chunkSize: Int = 64 * 1024) {
        self.descriptor = descriptor
        self.chunkSize = Swift.max(1, chunkSize)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let descriptor: Int32
        let chunkSize: Int
        var ended = false

        public mutating func next() async throws -> ByteBuffer? {
            guard !self.ended else { return nil }
            try Task.checkCancellation()
            let size = self.chunkSize
            let descriptor = self.descriptor
            let chunk: ByteBuffer? = try await NIOThreadPool.singleton.runIfActive {
                try FileChunks.readChunk(from: descriptor, upTo: size)
            }
            if chunk == nil { self.ended = true }
            return chunk
        }
    }

    /// One `read(2)` of up to `size` bytes (retried on `EINTR`); `nil` at end of file. Blocking: call it on a
    /// thread that may block (NIO's thread pool).
    static func readChunk(from descriptor: Int32, upTo size: Int) throws(ReadError) -> ByteBuffer? {
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        var failure: Int32?
        let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { pointer in
            while true {
                let result = read(descriptor, pointer.baseAddress, pointer.count)
                if result >= 0 { return result }
                if errno != EINTR {
                    failure = errno
                    return 0
                }
            }
        }
        if let failure { throw ReadError(errno: failure) }
        return count == 0 ? nil : buffer
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(descriptor: self.descriptor, chunkSize: self.chunkSize)
    }
}
