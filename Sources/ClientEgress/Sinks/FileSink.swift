#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
public import Logging
import NIOCore
import NIOPosix
import Synchronization
import TrickleRelaySupport

/// Appends each envelope's bytes and a newline to a file: the verbatim record of what was relayed.
///
/// A path whose writes wait for a reader — a FIFO, `/dev/stdout` into a pipe, a terminal — is a reader that can stop:
/// its batches go through a bounded queue written from a thread of its own (``QueuedStreamWriter``), so a
/// stopped reader never blocks delivery or shutdown. A batch that does not fit (4 MiB waiting) or finds the reader
/// gone fails its export, and the dispatcher counts its events as not delivered.
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
    /// The queue in front of a path whose writes wait for a reader; `nil` for a file.
    private let stream: QueuedStreamWriter?
    /// Events queued for a stream's reader and not written yet.
    private let waitingEvents = Atomic<Int>(0)
    /// Events queued for a stream's reader that could not be written (it went away first).
    private let lostEvents = Atomic<Int>(0)
    private let logger: Logger?
    private let isClosed = RelayMutex(false)
    /// Held for a whole append: a failed write is cut back to where its batch began, which is only safe while no
    /// other batch can append after it.
    private let appending = RelayMutex(())

    /// Opens (creating if needed) `path` for appending.
    /// - Throws: ``FileSinkError`` naming the path and the reason.
    /// - Parameter logger: Where a stream's events left unwritten at shutdown are reported.
    public init(path: String, syncPolicy: SyncPolicy = .never, logger: Logger? = nil) throws(FileSinkError) {
        // Non-blocking only to open: a FIFO nobody reads yet is refused (ENXIO) instead of blocking the start.
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0o644)
        guard descriptor >= 0 else {
            let reason = errno == ENXIO ? "a FIFO nobody reads (start its reader first)" : String(cString: strerror(errno))
            throw FileSinkError(.cannotOpen, description: "cannot open \(path) for appending: \(reason)")
        }
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
        self.path = path
        self.syncPolicy = syncPolicy
        self.descriptor = descriptor
        self.logger = logger
        self.stream = Self.hasReader(descriptor) ? QueuedStreamWriter(StandardStreamWriter(descriptor: descriptor), maximumQueuedBytes: Self.streamQueueBytes) : nil
    }

    /// The most bytes waiting for a stream's reader.
    static let streamQueueBytes = 4 * 1024 * 1024

    /// Whether writes to `descriptor` wait for a reader: a pipe, a FIFO or a socket (they cannot seek) or a
    /// terminal. Files and devices that take writes at once (`/dev/null`) can seek.
    private static func hasReader(_ descriptor: Int32) -> Bool {
        isatty(descriptor) == 1 || (lseek(descriptor, 0, SEEK_CUR) < 0 && errno == ESPIPE)
    }

    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        // Through `any EgressSink` the collection's type is not known here: iterating it generically copies each
        // record through value witnesses. Its contiguous storage (an array's) is iterated as concrete records.
        let data = records.withContiguousStorageIfAvailable(Self.lines(of:)) ?? Self.lines(of: Array(records))
        let descriptor = self.descriptor
        let sync = self.syncPolicy == .everyBatch
        let path = self.path
        // A small append without fsync lands in the page cache in microseconds: do it here rather than pay two
        // thread hops (most of the latency at a thousand events a second). Large or synced writes go to the
        // blocking pool, off the concurrency threads.
        let count = records.count
        if let stream = self.stream {
            self.waitingEvents.add(count, ordering: .relaxed)
            let outcome = stream.write(Array(data.readableBytesView)) { [self] written in
                self.waitingEvents.subtract(count, ordering: .relaxed)
                if !written { self.lostEvents.add(count, ordering: .relaxed) }
            }
            if outcome != .queued { self.waitingEvents.subtract(count, ordering: .relaxed) }
            switch outcome {
            case .queued:
                return
            case .dropped:
                throw FileSinkError(.writeFailed, description: "the reader of \(path) is not keeping up (\(Self.streamQueueBytes) bytes wait for it): a batch of \(count) events was not written")
            case .closed:
                throw FileSinkError(.writeFailed, description: "the reader of \(path) went away: a batch of \(count) events was not written")
            }
        }
        if !sync, data.readableBytes <= Self.inlineWriteLimit {
            try self.appending.withLock { _ in try Self.append(data, records: count, to: descriptor, path: path) }
            return
        }
        try await BlockingIO.run {
            try self.appending.withLock { _ in try Self.append(data, records: count, to: descriptor, path: path) }
            if sync, fsync(descriptor) != 0 {
                throw FileSinkError(.writeFailed, description: "fsync of \(path) failed: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Batches up to this size without fsync are written on the calling thread.
    static let inlineWriteLimit = 256 * 1024

    /// The envelopes, each followed by a newline, in one buffer.
    private static func lines(of records: UnsafeBufferPointer<TelemetryRecord>) -> ByteBuffer {
        var size = 0
        for record in records { size += record.envelope.readableBytes + 1 }
        var batch = ByteBufferAllocator().buffer(capacity: size)
        for record in records {
            batch.writeImmutableBuffer(record.envelope)
            batch.writeInteger(UInt8(ascii: "\n"))
        }
        return batch
    }

    private static func lines(of records: [TelemetryRecord]) -> ByteBuffer {
        records.withUnsafeBufferPointer(Self.lines(of:))
    }

    /// Appends `data` whole, or not at all: a write that fails part-way (a full disk, a file size limit) is cut
    /// back to where the batch began, so no torn record is left to be glued to the next one.
    private static func append(_ data: ByteBuffer, records: Int, to descriptor: Int32, path: String) throws {
        let start = lseek(descriptor, 0, SEEK_END)
        try data.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    let reason = String(cString: strerror(errno))
                    var undone = "nothing of it was written"
                    if offset > 0 {
                        undone = start >= 0 && ftruncate(descriptor, start) == 0
                            ? "the \(offset) bytes written were cut back"
                            : "\(offset) bytes of it stay at the end of the file (cutting them back failed)"
                    }
                    throw FileSinkError(.writeFailed, description: "writing \(path) failed: \(reason); a batch of \(records) events was not written, \(undone)")
                }
                offset += written
            }
        }
    }

    public func forceFlush() async throws {
        if let stream = self.stream {
            // What waits for a stream's reader, for a bounded time (a stopped reader does not hold the caller).
            _ = try await BlockingIO.run { stream.drain(timeout: Self.streamDrainTimeout) }
            return
        }
        let descriptor = self.descriptor
        try await BlockingIO.run { _ = fsync(descriptor) }
    }

    /// How long a stream's queue may take to reach its reader at a flush or shutdown.
    static let streamDrainTimeout: Duration = .seconds(2)

    public func shutdown() async {
        let wasClosed = self.isClosed.withLock { closed in
            defer { closed = true }
            return closed
        }
        guard !wasClosed else { return }
        if let stream = self.stream {
            // A reader that stopped keeps its thread in a write: the descriptor stays open (closing it could hand
            // its number to another file while that write, or a queued one, is still to come).
            let drained = (try? await BlockingIO.run { stream.drain(timeout: Self.streamDrainTimeout) }) ?? false
            if drained { close(self.descriptor) }
            let (waiting, lost) = (self.waitingEvents.load(ordering: .relaxed), self.lostEvents.load(ordering: .relaxed))
            if waiting + lost > 0 {
                self.logger?.warning(
                    "events handed to the file sink were not written: its reader stopped or went away",
                    metadata: ["file.path": "\(self.path)", "sink.unwritten_events": "\(waiting + lost)"]
                )
            }
            return
        }
        _ = fsync(self.descriptor)
        close(self.descriptor)
    }
}

/// A file sink could not open or write its file.
public struct FileSinkError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure (callers branch on it: a setup error exits 2, a write failure is a failure state).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The file cannot be opened for appending.
        public static let cannotOpen = Code("cannotOpen")
        /// A write or fsync failed (a full disk, a file size limit): the batch was cut back, never torn.
        public static let writeFailed = Code("writeFailed")
        public var description: String { self.name }
    }

    public var code: Code
    public var description: String

    public init(_ code: Code, description: String) {
        self.code = code
        self.description = description
    }
}
