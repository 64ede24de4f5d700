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
import TrickleProtocol
import TrickleRelaySupport

/// An append-only, segmented JSONL write-ahead log on disk, in front of a sink that can fail remotely.
///
/// A record is acknowledged to the dispatcher once ``append(_:)`` wrote it to the open segment file; the
/// delivery side reads records back in order (``read(from:maximumRecords:)``) and, once the remote side
/// accepted everything up to a cursor, ``acknowledge(through:)`` deletes the segment files behind it. After a
/// crash or `kill -9` a new `Spool` on the same directory resumes: undelivered records are delivered again
/// (at-least-once; a duplicate carries the same id), a torn last line is cut off and counted, and
/// ``resumePosition`` says how far the channel had been read.
///
/// Files: `NNNNNNNNNNNNNNNN.jsonl` segments (see ``SpoolLine`` for the line format), `state.json` (delivered
/// cursor and read position, replaced atomically), `delivered` (the delivered cursor, rewritten in place whenever
/// the remote side settles records — ``recordDelivered(through:)`` — and at every acknowledgement, with the extent
/// of the request in flight — ``recordInFlight(from:through:)``: 40 bytes with a check, so a crash re-delivers at
/// most the request in flight, and re-sends it as it was), `lock` (one client per spool directory).
public final class Spool: Sendable {
    struct Segment {
        var index: Int
        var bytes: Int
    }

    /// Appends waiting for the writer: their bytes, and what they move.
    struct PendingAppend {
        var buffer: ByteBuffer
        var records: Int
        var positions: [(String, ChannelPosition)]
        var ticket: UInt64
    }

    struct State {
        var segments: [Segment]  // oldest first; the last one is open for appending
        var writeDescriptor: Int32
        /// Bytes on disk, plus bytes accepted and waiting for the writer (the bound counts both).
        var totalBytes: Int
        var pending: [PendingAppend] = []
        /// An append is writing (at most one at a time; the others hand it their bytes: a group commit).
        var isWriting = false
        var nextTicket: UInt64 = 1
        /// Every append with a ticket at or below this is settled (written or refused).
        var settledTicket: UInt64 = 0
        var settleWaiters: [(ticket: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
        var lastAppended: [String: ChannelPosition]
        var delivered: Cursor
        /// The cursor last written to `delivered` (at or past ``delivered``: ``recordDelivered(through:)`` writes
        /// ahead of the acknowledgement that deletes files).
        var recorded: Cursor
        /// The end of the request in flight from ``recorded`` (``recordInFlight(from:through:)``), written with it.
        var inFlightEnd: Cursor?
        var stats = Stats()
        var isClosed = false
        var lastStateWrite: ContinuousClock.Instant?
        var failedTickets: Set<UInt64> = []
    }

    struct StateFile: Codable {
        var deliveredSegment: Int
        var deliveredOffset: Int
        /// The read position of records without a subscription (a single-channel client).
        var readPosition: ChannelPosition?
        /// The read position of every subscription, by id.
        var readPositions: [String: ChannelPosition]?
    }

    public let configuration: Configuration
    /// Where delivery starts: the first record not yet acknowledged.
    public let deliveryStart: Cursor
    /// The end of the request that was in flight from ``deliveryStart`` when the spool was last closed or crashed
    /// (``recordInFlight(from:through:)``), `nil` if none: the records up to it go first, as one request, so the
    /// endpoint receives the same request again (same records, same `Idempotency-Key`).
    public let inFlightAtStart: Cursor?
    /// Per subscription id, the channel position of the last record that reached the spool before it was last
    /// closed (or crashed); empty for a new spool. A restarted daemon resumes each channel just after it.
    public let resumePositions: [String: ChannelPosition]
    /// The resume position of records without a subscription id (a single-channel client), `nil` if none.
    public var resumePosition: ChannelPosition? { self.resumePositions[""] }
    let lockDescriptor: Int32
    /// `delivered`, open for rewriting in place; -1 when it cannot be opened (the state file's cursor then serves).
    let deliveredDescriptor: Int32
    let state: RelayMutex<State>
    let appended = GenerationSignal()
    let logger: Logger
    let stateFileFailures: FailureLog
    /// Appends that fail (disk full, quota, I/O error): a failure state, logged when it starts, throttled while it
    /// lasts, and when an append succeeds again.
    let appendFailures: FailureLog

    /// Appends' failure state while it holds (disk full, unwritable), for the live page.
    var appendFailure: FailureLog.Current? { self.appendFailures.current }
    let stateFileLock = RelayMutex(())

    /// Opens (creating if needed) the spool in `configuration.directory`, recovering from a crash.
    /// - Throws: ``SpoolError`` when the directory cannot be used or another client holds it.
    public init(configuration: Configuration, logger: Logger) throws(SpoolError) {
        self.configuration = configuration
        self.logger = logger
        self.stateFileFailures = FailureLog("spool state file cannot be written (a restart may deliver again what was already sent)", logger: logger)
        self.appendFailures = FailureLog("spool cannot append (disk full or unwritable): new events are refused and counted", logger: logger)
        let directory = configuration.directory
        do throws(PrivateDirectory.CreationError) {
            try PrivateDirectory.create(directory)
        } catch {
            throw SpoolError(.unusableDirectory, "cannot create the spool directory \(directory) (\(error)); choose another spool directory")
        }
        let lock = open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw SpoolError(.unusableDirectory, "cannot open \(directory)/lock: \(Self.lastError())") }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            Glibc.close(lock)
            throw SpoolError(.inUse, "the spool \(directory) is in use by another client; stop that client, or give this one another spool directory")
        }
        self.lockDescriptor = lock

        let saved = Self.readStateFile(directory)
        var stats = Stats()
        var segments: [Segment] = []
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.hasSuffix(".jsonl") {
            guard let index = Int(name.dropLast(6)), (0...Self.maximumSegmentIndex).contains(index),
                let attributes = try? FileManager.default.attributesOfItem(atPath: directory + "/" + name),
                let size = attributes[.size] as? Int
            else { continue }
            segments.append(Segment(index: index, bytes: size))
        }
        segments.sort { $0.index < $1.index }

        // The last segment is the only one a crash can leave torn: cut it back to its last complete line.
        // (Each run appends to segments of its own, and repairs the previous run's at start, so only the last
        // non-empty segment can be torn.)
        if let lastIndex = segments.lastIndex(where: { $0.bytes > 0 }) {
            let last = segments[lastIndex]
            let path = Self.path(directory, last.index)
            let kept = try Self.recoverTail(path: path, size: last.bytes)
            if kept < last.bytes {
                stats.tornLines += 1
                logger.warning(
                    "torn last line in the spool cut off (a crash mid-append)",
                    metadata: ["spool.file": "\(path)", "spool.bytes_cut": "\(last.bytes - kept)"]
                )
                segments[lastIndex].bytes = kept
            }
        }
        // Read positions: the state file's (written at every acknowledgement and at close), then every record
        // still in the spool (appended after that, up to a crash), the later of the two per subscription.
        var scanned: [String: ChannelPosition] = [:]
        for segment in segments where segment.bytes > 0 {
            scanned.merge(Self.lastPositions(path: Self.path(directory, segment.index), size: segment.bytes)) { _, later in later }
        }
        var positions = saved?.readPositions ?? [:]
        if let legacy = saved?.readPosition { positions[""] = legacy }
        positions.merge(scanned) { saved, spooled in max(saved, spooled) }
        self.resumePositions = positions

        // The later of the state file's cursor and the one rewritten at every acknowledgement.
        let deliveredDescriptor = open(directory + "/delivered", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        self.deliveredDescriptor = deliveredDescriptor
        let stateCursor = saved.map { Cursor(segment: $0.deliveredSegment, offset: $0.deliveredOffset) }
        let deliveredRecord = Self.readDeliveredRecord(deliveredDescriptor)
        let deliveredCursor = [stateCursor, deliveredRecord?.cursor].compactMap { $0 }.max()
        if let cursor = deliveredCursor, let segment = segments.first(where: { $0.index == cursor.segment }) {
            self.deliveryStart = Cursor(segment: cursor.segment, offset: min(cursor.offset, segment.bytes))
        } else {
            self.deliveryStart = Cursor(segment: segments.first?.index ?? 0, offset: 0)
        }
        // The request in flight at the crash, when it starts where delivery starts and its end is in the spool.
        if let record = deliveredRecord, record.cursor == self.deliveryStart, let end = record.inFlightEnd,
            segments.contains(where: { $0.index == end.segment && end.offset <= $0.bytes })
        {
            self.inFlightAtStart = end
        } else {
            self.inFlightAtStart = nil
        }
        // Delivered segments a crash left behind.
        while let first = segments.first, first.index < self.deliveryStart.segment {
            unlink(Self.path(directory, first.index))
            segments.removeFirst()
        }

        // Appends always go to a fresh segment.
        let nextIndex = max(segments.last.map { $0.index + 1 } ?? 0, (deliveredCursor?.segment ?? -1) + 1, self.deliveryStart.segment)
        let descriptor = try Self.openForAppending(Self.path(directory, nextIndex))
        segments.append(Segment(index: nextIndex, bytes: 0))
        let total = segments.reduce(0) { $0 + $1.bytes }
        stats.bytes = total
        stats.segments = segments.count
        self.state = RelayMutex(
            State(
                segments: segments,
                writeDescriptor: descriptor,
                totalBytes: total,
                lastAppended: positions,
                delivered: self.deliveryStart,
                recorded: self.deliveryStart,
                inFlightEnd: self.inFlightAtStart,
                stats: stats
            )
        )
        if total > 0 || !positions.isEmpty {
            logger.info(
                "spool resumed",
                metadata: [
                    "spool.dir": "\(directory)", "spool.bytes": "\(total)", "spool.segments": "\(segments.count - 1)",
                    "spool.channels": "\(positions.count)",
                ]
            )
        }
    }

    deinit {
        self.close()
    }

    /// The counters so far.
    public var stats: Stats { self.state.withLock { $0.stats } }

    /// Just after the last record appended.
    public var end: Cursor {
        self.state.withLock { state in
            let last = state.segments[state.segments.count - 1]
            return Cursor(segment: last.index, offset: last.bytes)
        }
    }

    /// How far deliveries were acknowledged.
    public var acknowledged: Cursor { self.state.withLock { $0.delivered } }
}
