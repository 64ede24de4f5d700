#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import Synchronization
import TrickleRelaySupport

/// Appending: records are queued, written by one writer at a time (whole lines; a failed write is cut back), and
/// the segment rotates past its size.
extension Spool {
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
    func writePending() async {
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
                failure = SpoolError(.io, "\(error)")
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

    func waitUntilSettled(_ ticket: UInt64) async {
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
    func rotate(to index: Int) async {
        let path = Self.path(self.configuration.directory, index)
        let opened: Result<Int32, SpoolError>
        do {
            opened = .success(try await BlockingIO.run { try Self.openForAppending(path) })
        } catch let error as SpoolError {
            opened = .failure(error)
        } catch {
            opened = .failure(SpoolError(.io, "\(error)"))
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
}
