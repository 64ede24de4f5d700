import NIOPosix

/// File I/O off the concurrency threads: on NIO's thread pool, and to its end.
enum BlockingIO {
    /// Runs `body` on NIO's thread pool and waits for it, whether or not the task is cancelled meanwhile: a
    /// SIGTERM must not cut a write short (the records it carries would be refused or half-written).
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            NIOThreadPool.singleton.submit { state in
                guard case .active = state else {
                    continuation.resume(throwing: BlockingIOError())
                    return
                }
                continuation.resume(with: Result { try body() })
            }
        }
    }
}

/// The I/O thread pool is stopped (the process is ending).
struct BlockingIOError: Error, CustomStringConvertible {
    var description: String { "the I/O thread pool is stopped" }
}
