#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import NIOCore
import NIOPosix
import Synchronization

/// A regular file read in chunks one read ahead of its consumer: while a chunk is being processed, the next is
/// already being read on NIO's blocking thread pool, so the copy out of the page cache is off the consumer's path.
///
/// The descriptor is owned here. ``close()`` never waits: a read still in flight (the consumer stopped early)
/// closes the descriptor when it ends, so no read ever runs on a closed — or reused — descriptor number.
///
/// ```swift
/// let file = try ReadAheadFile(path: path, chunkSize: 1 << 20)
/// defer { file.close() }
/// for try await chunk in file.chunks { … }
/// ```
public final class ReadAheadFile: Sendable {
    private struct State {
        var descriptor: Int32
        var isClosed = false
        var isReading = false
    }

    private let state: RelayMutex<State>
    /// The most bytes per chunk.
    public let chunkSize: Int

    /// Opens `path` for reading.
    /// - Throws: ``FileChunks/ReadError`` naming `errno` when it cannot be opened.
    public init(path: String, chunkSize: Int) throws(FileChunks.ReadError) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileChunks.ReadError(errno: errno) }
        self.state = RelayMutex(State(descriptor: descriptor))
        self.chunkSize = Swift.max(1, chunkSize)
    }

    /// Closes the file (at once, or when the read in flight ends). Later reads return end of file.
    public func close() {
        let descriptor: Int32? = self.state.withLock { state in
            guard !state.isClosed else { return nil }
            state.isClosed = true
            return state.isReading ? nil : state.descriptor
        }
        if let descriptor { closeFileDescriptor(descriptor) }
    }

    /// The file's chunks, in order; iterate once.
    public var chunks: Chunks { Chunks(file: self) }

    /// The chunks of a ``ReadAheadFile``.
    public struct Chunks: AsyncSequence, Sendable {
        public typealias Element = ByteBuffer
        let file: ReadAheadFile

        public struct AsyncIterator: AsyncIteratorProtocol {
            let file: ReadAheadFile
            var ahead: Task<ByteBuffer?, any Error>?
            var ended = false

            public mutating func next() async throws -> ByteBuffer? {
                guard !self.ended else { return nil }
                try Task.checkCancellation()
                let current = self.ahead ?? self.file.startRead()
                self.ahead = nil
                let chunk = try await current.value
                if chunk == nil {
                    self.ended = true
                } else {
                    self.ahead = self.file.startRead()
                }
                return chunk
            }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(file: self.file) }
    }

    /// Reads the next chunk on the blocking pool (one read in flight at a time: the iterator awaits each).
    private func startRead() -> Task<ByteBuffer?, any Error> {
        Task { try await NIOThreadPool.singleton.runIfActive { try self.readChunk() } }
    }

    private func readChunk() throws(FileChunks.ReadError) -> ByteBuffer? {
        let descriptor: Int32? = self.state.withLock { state in
            guard !state.isClosed else { return nil }
            state.isReading = true
            return state.descriptor
        }
        guard let descriptor else { return nil }
        defer {
            let closing = self.state.withLock { state in
                state.isReading = false
                return state.isClosed
            }
            if closing { closeFileDescriptor(descriptor) }
        }
        return try FileChunks.readChunk(from: descriptor, upTo: self.chunkSize)
    }
}

/// `close(2)`, named apart from ``ReadAheadFile/close()``.
private func closeFileDescriptor(_ descriptor: Int32) {
    _ = close(descriptor)
}
