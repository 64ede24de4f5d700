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
/// cursor and read position, replaced atomically), `lock` (one client per spool directory).
public final class Spool: Sendable {
    private struct Segment {
        var index: Int
        var bytes: Int
    }

    /// Appends waiting for the writer: their bytes, and what they move.
    private struct PendingAppend {
        var buffer: ByteBuffer
        var records: Int
        var positions: [(String, ChannelPosition)]
        var ticket: UInt64
    }

    private struct State {
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
        var stats = Stats()
        var isClosed = false
        var lastStateWrite: ContinuousClock.Instant?
        var failedTickets: Set<UInt64> = []
    }

    private struct StateFile: Codable {
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
    /// Per subscription id, the channel position of the last record that reached the spool before it was last
    /// closed (or crashed); empty for a new spool. A restarted daemon resumes each channel just after it.
    public let resumePositions: [String: ChannelPosition]
    /// The resume position of records without a subscription id (a single-channel client), `nil` if none.
    public var resumePosition: ChannelPosition? { self.resumePositions[""] }
    private let lockDescriptor: Int32
    private let state: Mutex<State>
    private let appended = GenerationSignal()
    private let logger: Logger
    private let stateFileFailures: FailureLog
    /// Appends that fail (disk full, quota, I/O error): a failure state, logged when it starts, throttled while it
    /// lasts, and when an append succeeds again.
    private let appendFailures: FailureLog
    private let stateFileLock = Mutex(())

    /// Opens (creating if needed) the spool in `configuration.directory`, recovering from a crash.
    /// - Throws: ``SpoolError`` when the directory cannot be used or another client holds it.
    public init(configuration: Configuration, logger: Logger) throws(SpoolError) {
        self.configuration = configuration
        self.logger = logger
        self.stateFileFailures = FailureLog("spool state file cannot be written (a restart may deliver again what was already sent)", logger: logger)
        self.appendFailures = FailureLog("spool cannot append (disk full or unwritable): new events are refused and counted", logger: logger)
        let directory = configuration.directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw SpoolError("cannot create the spool directory \(directory): \(error); choose another spool directory")
        }
        let lock = open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw SpoolError("cannot open \(directory)/lock: \(Self.lastError())") }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            Glibc.close(lock)
            throw SpoolError("the spool \(directory) is in use by another client; stop that client, or give this one another spool directory")
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

        let deliveredCursor = saved.map { Cursor(segment: $0.deliveredSegment, offset: $0.deliveredOffset) }
        if let cursor = deliveredCursor, let segment = segments.first(where: { $0.index == cursor.segment }) {
            self.deliveryStart = Cursor(segment: cursor.segment, offset: min(cursor.offset, segment.bytes))
        } else {
            self.deliveryStart = Cursor(segment: segments.first?.index ?? 0, offset: 0)
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
        self.state = Mutex(
            State(
                segments: segments,
                writeDescriptor: descriptor,
                totalBytes: total,
                lastAppended: positions,
                delivered: self.deliveryStart,
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

    // MARK: Appending

    /// Writes `records` to the open segment, in order, and returns once they are on disk (in the page cache, or
    /// synced with ``Configuration/syncsEveryAppend``). A record that does not fit in
    /// ``Configuration/maximumBytes`` is refused and counted (``Stats/overflowed``), as is everything after it in
    /// the batch.
    ///
    /// Concurrent appends (one per followed channel) are written together: the first becomes the writer and
    /// writes every batch queued meanwhile in one `write`, on NIO's thread pool — never under the spool's lock,
    /// never on a concurrency thread.
    ///
    /// - Returns: How many records (from the front) are now in the spool.
    @discardableResult
    public func append(_ records: some Collection<TelemetryRecord>) async -> Int {
        guard !records.isEmpty else { return 0 }
        var buffer = ByteBufferAllocator().buffer(capacity: records.reduce(0) { $0 + SpoolLine.size(of: $1) })
        var ends: [Int] = []
        ends.reserveCapacity(records.count)
        var positions: [(String, ChannelPosition)] = []
        positions.reserveCapacity(records.count)
        for record in records {
            SpoolLine.write(record, into: &buffer)
            ends.append(buffer.writerIndex)
            positions.append((record.subscription, ChannelPosition(seq: record.seq, line: record.lineNumber)))
        }
        let queued: (ticket: UInt64, accepted: Int, writes: Bool, overflowStarted: Bool)? = self.state.withLock { state in
            guard !state.isClosed else {
                state.stats.overflowed += records.count
                return nil
            }
            // As many whole records as fit.
            let room = self.configuration.maximumBytes - state.totalBytes
            let accepted = ends.firstIndex { $0 > room } ?? ends.count
            let refused = records.count - accepted
            let overflowStarted = refused > 0 && state.stats.overflowed == 0
            state.stats.overflowed += refused
            guard accepted > 0 else { return (0, 0, false, overflowStarted) }
            let ticket = state.nextTicket
            state.nextTicket += 1
            let bytes = ends[accepted - 1]
            state.totalBytes += bytes
            state.pending.append(
                PendingAppend(
                    buffer: buffer.getSlice(at: buffer.readerIndex, length: bytes)!,
                    records: accepted,
                    positions: Array(positions.prefix(accepted)),
                    ticket: ticket
                )
            )
            let writes = !state.isWriting
            state.isWriting = true
            return (ticket, accepted, writes, overflowStarted)
        }
        guard let queued else {
            self.logger.error("spool append refused: the spool is closed", metadata: ["spool.dir": "\(self.configuration.directory)"])
            return 0
        }
        if queued.overflowStarted {
            self.logger.warning(
                "spool full: new events are refused and counted until deliveries free space",
                metadata: ["spool.dir": "\(self.configuration.directory)", "spool.maximum_bytes": "\(self.configuration.maximumBytes)"]
            )
        }
        guard queued.accepted > 0 else { return 0 }
        if queued.writes { await self.writePending() }
        await self.waitUntilSettled(queued.ticket)
        return self.state.withLock { $0.failedTickets.remove(queued.ticket) == nil } ? queued.accepted : 0
    }

    /// The writer: writes what is pending, again and again, until nothing is; then hands the role back.
    private func writePending() async {
        while true {
            let batch: (pending: [PendingAppend], descriptor: Int32)? = self.state.withLock { state in
                guard !state.pending.isEmpty else {
                    state.isWriting = false
                    return nil
                }
                defer { state.pending.removeAll(keepingCapacity: true) }
                return (state.pending, state.writeDescriptor)
            }
            guard let batch else { return }
            var combined = batch.pending.count == 1 ? batch.pending[0].buffer : ByteBuffer()
            if batch.pending.count > 1 {
                combined.reserveCapacity(batch.pending.reduce(0) { $0 + $1.buffer.readableBytes })
                for append in batch.pending { combined.writeImmutableBuffer(append.buffer) }
            }
            let data = combined
            let sync = self.configuration.syncsEveryAppend
            let failure: SpoolError?
            do {
                try await BlockingIO.run { try Self.writeAll(data, to: batch.descriptor, sync: sync) }
                failure = nil
            } catch let error as SpoolError {
                failure = error
            } catch {
                failure = SpoolError("\(error)")
            }
            let tickets = batch.pending.map(\.ticket)
            let (waiters, rotation): ([CheckedContinuation<Void, Never>], Int?) = self.state.withLock { state in
                let bytes = data.readableBytes
                let records = batch.pending.reduce(0) { $0 + $1.records }
                if failure != nil {
                    // Never leave a partial line in front of later appends.
                    ftruncate(batch.descriptor, off_t(state.segments[state.segments.count - 1].bytes))
                    state.totalBytes -= bytes
                    state.stats.writeFailed += records
                    state.failedTickets.formUnion(tickets)
                } else {
                    state.segments[state.segments.count - 1].bytes += bytes
                    for append in batch.pending {
                        for (subscription, position) in append.positions { state.lastAppended[subscription] = position }
                    }
                    state.stats.appended += records
                    state.stats.bytes = state.totalBytes
                }
                state.settledTicket = max(state.settledTicket, tickets.max() ?? 0)
                let settled = state.settledTicket
                let ready = state.settleWaiters.filter { $0.ticket <= settled }.map(\.continuation)
                state.settleWaiters.removeAll { $0.ticket <= settled }
                let last = state.segments[state.segments.count - 1]
                return (ready, last.bytes >= self.configuration.segmentBytes ? last.index + 1 : nil)
            }
            if let failure {
                let refused = self.state.withLock { $0.stats.writeFailed }
                self.appendFailures.failed(
                    reason: failure.description,
                    metadata: ["spool.dir": "\(self.configuration.directory)", "spool.write_failed_total": "\(refused)"]
                )
            } else {
                self.appendFailures.cleared(metadata: ["spool.dir": "\(self.configuration.directory)"])
            }
            if let next = rotation { await self.rotate(to: next) }
            if failure == nil { self.appended.advance() }
            for waiter in waiters { waiter.resume() }
        }
    }

    private func waitUntilSettled(_ ticket: UInt64) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let settled = self.state.withLock { state -> Bool in
                guard state.settledTicket < ticket else { return true }
                state.settleWaiters.append((ticket, continuation))
                return false
            }
            if settled { continuation.resume() }
        }
    }

    /// Starts segment file `index` (opened on the thread pool) and appends go there from now on.
    private func rotate(to index: Int) async {
        let path = Self.path(self.configuration.directory, index)
        let opened: Result<Int32, SpoolError>
        do {
            opened = .success(try await BlockingIO.run { try Self.openForAppending(path) })
        } catch let error as SpoolError {
            opened = .failure(error)
        } catch {
            opened = .failure(SpoolError("\(error)"))
        }
        switch opened {
        case .success(let descriptor):
            let previous: Int32? = self.state.withLock { state in
                guard !state.isClosed, state.segments[state.segments.count - 1].index == index - 1 else { return nil }
                defer { state.writeDescriptor = descriptor }
                state.segments.append(Segment(index: index, bytes: 0))
                state.stats.segments = state.segments.count
                return state.writeDescriptor
            }
            Glibc.close(previous ?? descriptor)
        case .failure(let error):
            // Keep appending to the current segment; it is only larger than planned.
            self.logger.warning("spool segment rotation failed", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Reading

    /// Reads up to `maximumRecords` records from `cursor`, in order, and the cursor after them (on NIO's thread
    /// pool). Returns no records when the cursor is at the end of what was appended.
    public func read(from cursor: Cursor, maximumRecords: Int) async throws(SpoolError) -> (records: [TelemetryRecord], next: Cursor) {
        do {
            return try await BlockingIO.run { try self.readNow(from: cursor, maximumRecords: maximumRecords) }
        } catch let error as SpoolError {
            throw error
        } catch {
            throw SpoolError("spool read failed: \(error)")
        }
    }

    /// ``read(from:maximumRecords:)``, on the calling thread.
    private func readNow(from cursor: Cursor, maximumRecords: Int) throws(SpoolError) -> (records: [TelemetryRecord], next: Cursor) {
        var cursor = cursor
        var records: [TelemetryRecord] = []
        while records.count < maximumRecords {
            let found: (index: Int, available: Int, isLast: Bool)? = self.state.withLock { state in
                guard let position = state.segments.firstIndex(where: { $0.index >= cursor.segment }) else { return nil }
                let segment = state.segments[position]
                return (segment.index, segment.index == cursor.segment ? segment.bytes - cursor.offset : segment.bytes, position == state.segments.count - 1)
            }
            guard let found else { break }
            if found.index != cursor.segment { cursor = Cursor(segment: found.index, offset: 0) }
            if found.available <= 0 {
                if found.isLast { break }
                cursor = Cursor(segment: found.index + 1, offset: 0)
                continue
            }
            // Read 256 KiB at a time (a batch of records, not the whole segment); a line longer than that gets a
            // second read of up to 8 MiB, which always holds one (a spool line is at most a 5 MiB line plus its
            // wrapper).
            var chunk = try self.readChunk(segment: found.index, offset: cursor.offset, length: min(found.available, 256 << 10))
            var consumed = self.parse(chunk, into: &records, maximumRecords: maximumRecords)
            if consumed == 0, chunk.readableBytes < min(found.available, 8 << 20) {
                chunk = try self.readChunk(segment: found.index, offset: cursor.offset, length: min(found.available, 8 << 20))
                consumed = self.parse(chunk, into: &records, maximumRecords: maximumRecords)
            }
            guard consumed > 0 else {
                // Appended lines always end with a newline, so this is a line we cannot read: skip the chunk.
                self.state.withLock { $0.stats.corruptLines += 1 }
                cursor.offset += chunk.readableBytes
                continue
            }
            cursor.offset += consumed
        }
        let delivered = records.count
        self.state.withLock { $0.stats.delivered += delivered }
        return (records, cursor)
    }

    /// Splits `chunk` into records; returns the bytes consumed (whole lines only).
    private func parse(_ chunk: ByteBuffer, into records: inout [TelemetryRecord], maximumRecords: Int) -> Int {
        var consumed = 0
        var corrupt = 0
        chunk.withUnsafeReadableBytes { bytes in
            while records.count < maximumRecords, consumed < bytes.count {
                guard let newline = bytes[consumed...].firstIndex(of: UInt8(ascii: "\n")) else { break }
                let line = chunk.getSlice(at: chunk.readerIndex + consumed, length: newline - consumed)!
                if let record = SpoolLine.read(line) {
                    records.append(record)
                } else {
                    corrupt += 1
                }
                consumed = newline + 1
            }
        }
        if corrupt > 0 {
            self.state.withLock { $0.stats.corruptLines += corrupt }
            self.logger.warning("unreadable spool lines skipped", metadata: ["spool.lines": "\(corrupt)"])
        }
        return consumed
    }

    private func readChunk(segment: Int, offset: Int, length: Int) throws(SpoolError) -> ByteBuffer {
        let path = Self.path(self.configuration.directory, segment)
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SpoolError("cannot open \(path): \(Self.lastError())") }
        defer { Glibc.close(descriptor) }
        var buffer = ByteBufferAllocator().buffer(capacity: length)
        var total = 0
        while total < length {
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length - total) { bytes in
                max(pread(descriptor, bytes.baseAddress!, length - total, off_t(offset + total)), 0)
            }
            if count == 0 { break }
            total += count
        }
        return buffer
    }

    /// Waits until records are appended after the generation `seen` (from ``appendGeneration``), or the task
    /// is cancelled.
    public func waitForAppend(past seen: UInt64) async { await self.appended.wait(past: seen) }

    /// Bumped by every append; pass it to ``waitForAppend(past:)``.
    public var appendGeneration: UInt64 { self.appended.generation }

    // MARK: Acknowledging

    /// Everything before `cursor` was accepted by the remote side: deletes the segment files wholly behind it
    /// and records the cursor, so a restart does not deliver them again. The files are written and deleted on
    /// NIO's thread pool, outside the spool's lock.
    public func acknowledge(through cursor: Cursor) async {
        // Everything appended is delivered: close the open segment so it can go too (only while no append
        // writes: the rotation takes the writer's role).
        let rotation: Int? = self.state.withLock { state in
            guard !state.isClosed, cursor > state.delivered, !state.isWriting, let last = state.segments.last,
                cursor.segment == last.index, cursor.offset >= last.bytes, last.bytes > 0
            else { return nil }
            state.isWriting = true
            return last.index + 1
        }
        if let rotation {
            await self.rotate(to: rotation)
            let appendsWaiting = self.state.withLock { state -> Bool in
                if state.pending.isEmpty { state.isWriting = false }
                return !state.pending.isEmpty
            }
            if appendsWaiting { await self.writePending() }
        }
        let work: (file: StateFile?, deletable: [Int]) = self.state.withLock { state in
            guard !state.isClosed, cursor > state.delivered else { return (nil, []) }
            state.delivered = cursor
            var deletable: [Int] = []
            while state.segments.count > 1, let first = state.segments.first,
                first.index < cursor.segment || (first.index == cursor.segment && cursor.offset >= first.bytes)
            {
                deletable.append(first.index)
                state.segments.removeFirst()
                state.totalBytes -= first.bytes
                state.stats.segmentsDeleted += 1
            }
            // A cursor at the end of a deleted segment is the start of the next one.
            state.delivered = max(state.delivered, Cursor(segment: state.segments[0].index, offset: 0))
            state.stats.bytes = state.totalBytes
            state.stats.segments = state.segments.count
            // The state (with the read positions) is on disk before any segment goes: a crash in between leaves
            // delivered segments behind (the next start deletes them), never a lost position. Without a deletion
            // it is written at most once a second (a stale delivered cursor only means a few duplicates after a
            // crash; the positions of what is still in the spool are read back from the spool itself).
            let now = ContinuousClock.now
            guard !deletable.isEmpty || state.lastStateWrite.map({ now - $0 >= .seconds(1) }) ?? true else { return (nil, []) }
            state.lastStateWrite = now
            return (Self.stateFile(state), deletable)
        }
        guard let file = work.file else { return }
        let directory = self.configuration.directory
        let written = try? await BlockingIO.run { [self] in
            let written = self.writeStateFile(file)
            // Only behind a recorded state: a segment must never go before the position of its records is kept.
            if written { for index in work.deletable { unlink(Self.path(directory, index)) } }
            return written
        }
        if written != true {
            // The segments stay; the next start deletes them once it has read their positions.
            self.logger.debug("delivered spool segments kept until the state file is written", metadata: ["spool.segments": "\(work.deletable.count)"])
        }
    }

    /// Records the state and releases the directory. Appends after this are refused.
    public func close() {
        let closing: (descriptor: Int32, file: StateFile)? = self.state.withLock { state in
            guard !state.isClosed else { return nil }
            state.isClosed = true
            return (state.writeDescriptor, Self.stateFile(state))
        }
        guard let (descriptor, file) = closing else { return }
        self.writeStateFile(file)
        if self.configuration.syncsEveryAppend { fsync(descriptor) }
        Glibc.close(descriptor)
        flock(self.lockDescriptor, LOCK_UN)
        Glibc.close(self.lockDescriptor)
    }

    // MARK: Files

    private static func stateFile(_ state: State) -> StateFile {
        var positions = state.lastAppended
        let legacy = positions.removeValue(forKey: "")
        return StateFile(
            deliveredSegment: state.delivered.segment,
            deliveredOffset: state.delivered.offset,
            readPosition: legacy,
            readPositions: positions.isEmpty ? nil : positions
        )
    }

    /// Replaces `state.json` atomically (one writer at a time; never under the spool's lock). A failure is
    /// logged (once per interval while it lasts) and counted, never ignored: without the file a restart delivers
    /// again what was already delivered.
    ///
    /// - Returns: Whether the file was written.
    @discardableResult
    private func writeStateFile(_ file: StateFile) -> Bool {
        let path = self.configuration.directory + "/state.json"
        let failure: (any Error)? = self.stateFileLock.withLock { _ in
            do {
                let data = try JSONEncoder().encode(file)
                let temporary = path + ".tmp"
                guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else {
                    throw SpoolError("cannot write \(temporary): \(Self.lastError())")
                }
                guard rename(temporary, path) == 0 else { throw SpoolError("cannot rename \(temporary) to \(path): \(Self.lastError())") }
                return nil
            } catch {
                return error
            }
        }
        if let failure {
            self.state.withLock { $0.stats.stateFileFailures += 1 }
            self.stateFileFailures.failed(reason: "\(failure)", metadata: ["spool.dir": "\(self.configuration.directory)"])
            return false
        }
        if self.stateFileFailures.isFailing { self.stateFileFailures.cleared() }
        return true
    }

    private static func readStateFile(_ directory: String) -> StateFile? {
        guard let data = FileManager.default.contents(atPath: directory + "/state.json") else { return nil }
        guard let state = try? JSONDecoder().decode(StateFile.self, from: data) else { return nil }
        // The file is input like any other: numbers a spool of ours never writes are refused, not added to.
        let segments = 0...Self.maximumSegmentIndex
        guard segments.contains(state.deliveredSegment), (0...Int(Int32.max)).contains(state.deliveredOffset) else { return nil }
        func isValid(_ position: ChannelPosition) -> Bool { TrickleSeq.isValid(position.seq) && (0...Int(Int32.max)).contains(position.line) }
        if let position = state.readPosition, !isValid(position) { return nil }
        if let positions = state.readPositions {
            guard positions.count <= 1_000_000,
                positions.allSatisfy({ SubscriptionID.isValid($0.key) && isValid($0.value) })
            else { return nil }
        }
        return state
    }

    /// The largest segment file index the spool reads or writes (a file named beyond it is not the spool's).
    static let maximumSegmentIndex = 1 << 40

    static func path(_ directory: String, _ index: Int) -> String {
        let digits = String(index)
        return directory + "/" + String(repeating: "0", count: max(16 - digits.count, 0)) + digits + ".jsonl"
    }

    private static func openForAppending(_ path: String) throws(SpoolError) -> Int32 {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SpoolError("cannot open \(path) for appending: \(Self.lastError())") }
        return descriptor
    }

    /// Cuts a torn tail off the file; returns the size kept.
    private static func recoverTail(path: String, size: Int) throws(SpoolError) -> Int {
        guard let data = FileManager.default.contents(atPath: path) else { throw SpoolError("cannot read \(path): \(Self.lastError())") }
        let end = data.lastIndex(of: UInt8(ascii: "\n")).map { $0 - data.startIndex + 1 } ?? 0
        if end < data.count, truncate(path, off_t(end)) != 0 {
            throw SpoolError("cannot cut the torn tail of \(path): \(Self.lastError())")
        }
        return end
    }

    /// The channel position of the last record of every subscription in the first `size` bytes of a segment
    /// file (unreadable lines are skipped here and counted when delivery reads them).
    private static func lastPositions(path: String, size: Int) -> [String: ChannelPosition] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        let buffer = ByteBuffer(bytes: data.prefix(size))
        var positions: [String: ChannelPosition] = [:]
        buffer.withUnsafeReadableBytes { bytes in
            var start = 0
            while start < bytes.count, let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
                if let record = SpoolLine.read(buffer.getSlice(at: buffer.readerIndex + start, length: newline - start)!) {
                    positions[record.subscription] = ChannelPosition(seq: record.seq, line: record.lineNumber)
                }
                start = newline + 1
            }
        }
        return positions
    }

    private static func writeAll(_ buffer: ByteBuffer, to descriptor: Int32, sync: Bool) throws(SpoolError) {
        let failure: SpoolError? = buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return SpoolError("write failed: \(Self.lastError())")
                }
                offset += written
            }
            return nil
        }
        if let failure { throw failure }
        if sync, fsync(descriptor) != 0 { throw SpoolError("fsync failed: \(Self.lastError())") }
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}
