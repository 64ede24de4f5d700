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
/// producer); a regular file, which never blocks, is read on NIO's thread pool.
public func withStandardInput<T: Sendable>(
    _ body: (any AsyncSequence<ByteBuffer, any Error>) async throws -> T
) async throws -> T {
    var status = stat()
    if fstat(0, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG {
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
