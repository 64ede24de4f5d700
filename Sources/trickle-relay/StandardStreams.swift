#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import TrickleProtocol

/// Reads a file descriptor (standard input by default) as `ByteBuffer` chunks without blocking the
/// concurrency pool: each `read(2)` runs on NIO's blocking thread pool, so pipes, files and terminals all work.
struct StandardInputChunks: AsyncSequence {
    typealias Element = ByteBuffer

    var descriptor: Int32 = 0
    var chunkSize = 64 * 1024

    struct AsyncIterator: AsyncIteratorProtocol {
        let descriptor: Int32
        let chunkSize: Int
        var ended = false
        /// The next chunk, already being read while the consumer works on the current one.
        var prefetch: Task<ByteBuffer?, any Error>?

        mutating func next() async throws -> ByteBuffer? {
            guard !self.ended else { return nil }
            if Task.isCancelled {
                // SIGTERM/SIGINT: stop between chunks (a read in flight is short: regular files never block).
                self.prefetch?.cancel()
                throw CancellationError()
            }
            let chunk = try await (self.prefetch ?? self.startRead()).value
            self.prefetch = nil
            if chunk == nil {
                self.ended = true
            } else {
                self.prefetch = self.startRead()
            }
            return chunk
        }

        private func startRead() -> Task<ByteBuffer?, any Error> {
            let size = self.chunkSize
            let descriptor = self.descriptor
            return Task {
                try await NIOThreadPool.singleton.runIfActive {
                    var buffer = ByteBufferAllocator().buffer(capacity: size)
                    let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { pointer in
                        while true {
                            let result = read(descriptor, pointer.baseAddress, pointer.count)
                            if result >= 0 { return result }
                            if errno != EINTR { return 0 }
                        }
                    }
                    return count == 0 ? nil : buffer
                }
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(descriptor: self.descriptor, chunkSize: self.chunkSize)
    }
}

/// Standard output: whole records, and `false` once its reader has gone (EPIPE) — never a trap.
enum StandardOutput {
    @discardableResult
    static func write(_ buffer: ByteBuffer) -> Bool {
        guard buffer.readableBytes > 0 else { return !StandardStreamWriter.standardOutput.isClosed }
        return StandardStreamWriter.standardOutput.write(buffer.readableBytesView)
    }

    @discardableResult
    static func write(_ text: String) -> Bool {
        StandardStreamWriter.standardOutput.write(text)
    }
}

/// Writes a line to standard error (messages for people; never payloads). A closed standard error drops them.
enum StandardError {
    static func write(_ text: String) {
        self.writeRaw(text + "\n")
    }

    static func writeRaw(_ text: String) {
        StandardStreamWriter.standardError.write(text)
    }
}

/// Thrown by a command whose output is its product (`subscribe`) when standard output's reader went away.
struct StandardOutputClosed: Error {}
