#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization
import TrickleRelaySupport

/// Acknowledging deliveries (segment files behind the cursor are deleted) and closing.
extension Spool {
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
            // Also an empty segment that is not the open one (a crash right after a rotation leaves one): nothing
            // will ever be in it, and a cursor that stopped at its start would never reach the end of the spool.
            while state.segments.count > 1, let first = state.segments.first,
                first.index < cursor.segment || (first.index == cursor.segment && cursor.offset >= first.bytes) || first.bytes == 0
            {
                deletable.append(first.index)
                state.segments.removeFirst()
                state.totalBytes -= first.bytes
                state.stats.segmentsDeleted += 1
            }
            // A cursor at the end of a deleted segment is the start of the next one.
            state.delivered = max(state.delivered, Cursor(segment: state.segments[0].index, offset: 0))
            // 24 bytes rewritten in place (page cache, no new blocks: it cannot fail on a full disk), in order,
            // never behind what ``recordDelivered(through:)`` wrote.
            if state.delivered > state.recorded {
                state.recorded = state.delivered
                self.writeDeliveredRecord(state)
            }
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

    /// Everything before `cursor` was accepted by the remote side: records it at once (the 24-byte `delivered`
    /// file, rewritten in place), so a crash from here on does not deliver those records again. Deleting the
    /// files behind it is ``acknowledge(through:)``'s part. Synchronous and cheap (one `pwrite` to the page
    /// cache): a settling sink's callback calls it the moment the remote side answers, which narrows what a
    /// crash re-delivers to the request in flight.
    public func recordDelivered(through cursor: Cursor) {
        self.state.withLock { state in
            guard !state.isClosed, cursor > state.recorded else { return }
            state.recorded = cursor
            self.writeDeliveredRecord(state)
        }
    }

    /// The sink behind is sending, as one request, the records from `start` (just after the last record recorded
    /// as delivered) up to `end`: recorded with the delivered cursor (one `pwrite`, per request), so that after a
    /// crash the next start re-sends exactly that request — the same records, so the same `Idempotency-Key` —
    /// before anything else (``inFlightAtStart``), and an endpoint that honours the key applies it once.
    /// Nothing is recorded when `start` is not where the recorded delivery ends.
    public func recordInFlight(from start: Cursor, through end: Cursor) {
        self.state.withLock { state in
            guard !state.isClosed, start == state.recorded, end > start, state.inFlightEnd != end else { return }
            state.inFlightEnd = end
            self.writeDeliveredRecord(state)
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
        if self.deliveredDescriptor >= 0 { Glibc.close(self.deliveredDescriptor) }
        flock(self.lockDescriptor, LOCK_UN)
        Glibc.close(self.lockDescriptor)
    }

    // MARK: The delivered cursor

    /// What the `delivered` file holds: the delivered cursor, and the end of the request in flight from it.
    struct DeliveredRecord: Equatable {
        var cursor: Cursor
        /// Past ``cursor`` when a request of the records between them was in flight.
        var inFlightEnd: Cursor?
    }

    /// `segment`, `offset`, the in-flight end's `segment` and `offset` (the cursor itself when none) and a check
    /// word, little-endian: a torn or foreign file reads as no cursor.
    static func deliveredBytes(_ record: DeliveredRecord) -> [UInt8] {
        let cursor = record.cursor
        let end = record.inFlightEnd.flatMap { $0 > cursor ? $0 : nil } ?? cursor
        let words = [cursor.segment, cursor.offset, end.segment, end.offset].map { UInt64(truncatingIfNeeded: $0) }
        let check = words.reduce(UInt64(0x7472_6963_6B6C_6521)) { ($0 ^ $1) &* 0x9E37_79B9_7F4A_7C15 }
        return Self.littleEndianBytes(words + [check])
    }

    /// The first format (until the in-flight end was added): `segment`, `offset` and a check word. Read, never
    /// written: a spool left by an older version resumes where it was.
    static func legacyDeliveredBytes(_ cursor: Cursor) -> [UInt8] {
        let (segment, offset) = (UInt64(truncatingIfNeeded: cursor.segment), UInt64(truncatingIfNeeded: cursor.offset))
        return Self.littleEndianBytes([segment, offset, segment &* 0x9E37_79B9_7F4A_7C15 ^ offset ^ 0x7472_6963_6B6C_6521])
    }

    private static func littleEndianBytes(_ words: [UInt64]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(words.count * 8)
        for word in words {
            withUnsafeBytes(of: word.littleEndian) { bytes += $0 }
        }
        return bytes
    }

    /// Rewrites `delivered` in place from the state (called under its lock, so writes keep their order).
    func writeDeliveredRecord(_ state: State) {
        guard self.deliveredDescriptor >= 0 else { return }
        let bytes = Self.deliveredBytes(DeliveredRecord(cursor: state.recorded, inFlightEnd: state.inFlightEnd))
        _ = bytes.withUnsafeBytes { pwrite(self.deliveredDescriptor, $0.baseAddress, $0.count, 0) }
    }

    static func readDeliveredRecord(_ descriptor: Int32) -> DeliveredRecord? {
        guard descriptor >= 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 40)
        let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, 40, 0) }
        guard count >= 24 else { return nil }
        func word(_ index: Int) -> UInt64 {
            bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self)) }
        }
        func cursor(_ index: Int) -> Cursor? {
            let (segment, offset) = (word(index), word(index + 1))
            guard segment <= UInt64(Self.maximumSegmentIndex), offset <= UInt64(1 << 40) else { return nil }
            return Cursor(segment: Int(segment), offset: Int(offset))
        }
        if count == 40, let start = cursor(0), let end = cursor(2) {
            let record = DeliveredRecord(cursor: start, inFlightEnd: end > start ? end : nil)
            if Self.deliveredBytes(record) == bytes { return record }
        }
        if let start = cursor(0), Self.legacyDeliveredBytes(start) == Array(bytes.prefix(24)) {
            return DeliveredRecord(cursor: start, inFlightEnd: nil)
        }
        return nil
    }
}
