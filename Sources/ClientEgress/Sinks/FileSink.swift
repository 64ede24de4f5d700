import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// Appends each envelope's bytes and a newline to a file: the verbatim record of what was relayed.
public final class FileSink: EgressSink {
    /// When the file is synced to disk.
    public enum SyncPolicy: Sendable, Hashable {
        /// Leave it to the operating system.
        case never
        /// `fsync` after every batch (nothing acknowledged is lost to a crash of the machine).
        case everyBatch
    }

    public let path: String
    public let syncPolicy: SyncPolicy
    private let descriptor: Int32
    private let isClosed = Mutex(false)

    /// Opens (creating if needed) `path` for appending.
    /// - Throws: ``FileSinkError`` naming the path and the reason.
    public init(path: String, syncPolicy: SyncPolicy = .never) throws(FileSinkError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw FileSinkError(description: "cannot open \(path) for appending: \(String(cString: strerror(errno)))")
        }
        self.path = path
        self.syncPolicy = syncPolicy
        self.descriptor = descriptor
    }

    public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        var batch = ByteBufferAllocator().buffer(capacity: records.reduce(0) { $0 + $1.envelope.readableBytes + 1 })
        for record in records {
            batch.writeImmutableBuffer(record.envelope)
            batch.writeInteger(UInt8(ascii: "\n"))
        }
        let data = batch
        let descriptor = self.descriptor
        let sync = self.syncPolicy == .everyBatch
        let path = self.path
        try await NIOThreadPool.singleton.runIfActive {
            try data.withUnsafeReadableBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        throw FileSinkError(description: "writing \(path) failed: \(String(cString: strerror(errno)))")
                    }
                    offset += written
                }
            }
            if sync, fsync(descriptor) != 0 {
                throw FileSinkError(description: "fsync of \(path) failed: \(String(cString: strerror(errno)))")
            }
        }
    }

    public func forceFlush() async throws {
        let descriptor = self.descriptor
        try await NIOThreadPool.singleton.runIfActive { _ = fsync(descriptor) }
    }

    public func shutdown() async {
        let wasClosed = self.isClosed.withLock { closed in
            defer { closed = true }
            return closed
        }
        if !wasClosed {
            _ = fsync(self.descriptor)
            close(self.descriptor)
        }
    }
}

/// A file sink could not open or write its file.
public struct FileSinkError: Error, Sendable, CustomStringConvertible {
    public var description: String
}
