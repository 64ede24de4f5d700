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

/// Reading back, in order, from a cursor; lines that cannot be read are skipped and counted.
extension Spool {
    // MARK: Reading

    /// Records read back: each with the cursor just after its line, and where the next read starts.
    public struct ReadBatch: Sendable {
        /// The records, in spool order.
        public var records: [TelemetryRecord]
        /// `ends[i]` is the cursor just after `records[i]`: acknowledging through it covers exactly the records up
        /// to `i` (a sink that settled part of a batch acknowledges that part).
        public var ends: [Cursor]
        /// Where the next read starts (past unreadable lines after the last record, too).
        public var next: Cursor
    }

    /// Reads up to `maximumRecords` records from `cursor`, in order, and the cursor after them (on NIO's thread
    /// pool). Returns no records when the cursor is at the end of what was appended.
    public func read(from cursor: Cursor, maximumRecords: Int) async throws(SpoolError) -> ReadBatch {
        do {
            return try await BlockingIO.run { try self.readNow(from: cursor, maximumRecords: maximumRecords) }
        } catch let error as SpoolError {
            throw error
        } catch {
            throw SpoolError(.io, "spool read failed: \(error)")
        }
    }

    /// ``read(from:maximumRecords:)``, on the calling thread.
    func readNow(from cursor: Cursor, maximumRecords: Int) throws(SpoolError) -> ReadBatch {
        var cursor = cursor
        var records: [TelemetryRecord] = []
        var ends: [Cursor] = []
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
            var consumed = self.parse(chunk, at: cursor, into: &records, ends: &ends, maximumRecords: maximumRecords)
            if consumed == 0, chunk.readableBytes < min(found.available, 8 << 20) {
                chunk = try self.readChunk(segment: found.index, offset: cursor.offset, length: min(found.available, 8 << 20))
                consumed = self.parse(chunk, at: cursor, into: &records, ends: &ends, maximumRecords: maximumRecords)
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
        return ReadBatch(records: records, ends: ends, next: cursor)
    }

    /// Splits `chunk` (read at `start`) into records and their end cursors; returns the bytes consumed (whole
    /// lines only).
    func parse(_ chunk: ByteBuffer, at start: Cursor, into records: inout [TelemetryRecord], ends: inout [Cursor], maximumRecords: Int) -> Int {
        var consumed = 0
        var corrupt = 0
        chunk.withUnsafeReadableBytes { bytes in
            while records.count < maximumRecords, consumed < bytes.count {
                guard let newline = bytes[consumed...].firstIndex(of: UInt8(ascii: "\n")) else { break }
                let line = chunk.getSlice(at: chunk.readerIndex + consumed, length: newline - consumed)!
                if let record = SpoolLine.read(line) {
                    records.append(record)
                    ends.append(Cursor(segment: start.segment, offset: start.offset + newline + 1))
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

    func readChunk(segment: Int, offset: Int, length: Int) throws(SpoolError) -> ByteBuffer {
        let path = Self.path(self.configuration.directory, segment)
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SpoolError(.io, "cannot open \(path): \(Self.lastError())") }
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
}
