public import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Hands standard input to `body` as an async sequence of chunks (the runner's and `publish`'s input).
///
/// Pipes, terminals and sockets are read through NIO (cancellable, so SIGTERM is not held up by a silent
/// producer); a regular file (seekable, and never blocking) is read on NIO's thread pool. Pipes, sockets and
/// terminals cannot seek (`ESPIPE`), which is how they are told apart without `stat`.
public func withStandardInput<T: Sendable>(
    _ body: (any AsyncSequence<ByteBuffer, any Error>) async throws -> T
) async throws -> T {
    if lseek(0, 0, SEEK_CUR) >= 0 {
        return try await body(FileChunks())
    }
    let channel = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .takingOwnershipOfDescriptor(input: dup(0)) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    return try await channel.executeThenClose { inbound, _ in
        try await body(inbound)
    }
}

/// ``withStandardInput(_:)`` that can be told to stop: `stop` ends the input early, and what was already read from
/// the descriptor is still handed over before the sequence ends — a stop signal ends the input, it does not drop
/// lines the process already took out of the pipe (they would be counted nowhere).
///
/// A pipe, terminal or socket stops by closing its read side (NIO hands over what it buffered, then the end); a
/// regular file stops before its next read.
public func withStoppableStandardInput<T: Sendable>(
    _ body: (any AsyncSequence<ByteBuffer, any Error>, _ stop: @escaping @Sendable () -> Void) async throws -> T
) async throws -> T {
    if lseek(0, 0, SEEK_CUR) >= 0 {
        let stopped = StopFlag()
        return try await body(StoppableChunks(chunks: FileChunks(), stopped: stopped), { stopped.set() })
    }
    let channel = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .takingOwnershipOfDescriptor(input: dup(0)) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let underlying = channel.channel
    return try await channel.executeThenClose { inbound, _ in
        try await body(inbound, { underlying.close(mode: .input, promise: nil) })
    }
}

/// Set once; read from any thread.
private final class StopFlag: Sendable {
    private let value = RelayMutex(false)
    func set() { self.value.withLock { $0 = true } }
    var isSet: Bool { self.value.withLock { $0 } }
}

/// A file's chunks that end once stopped (before the next read).
private struct StoppableChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let chunks: FileChunks
    let stopped: StopFlag

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: FileChunks.AsyncIterator
        let stopped: StopFlag

        mutating func next() async throws -> ByteBuffer? {
            if self.stopped.isSet { return nil }
            return try await self.base.next()
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: self.chunks.makeAsyncIterator(), stopped: self.stopped) }
}
