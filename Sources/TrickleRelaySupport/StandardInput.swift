public import NIOCore
import NIOPosix

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
