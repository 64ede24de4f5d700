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
import TrickleProtocol
import TrickleRelaySupport

/// The files: `state.json` written atomically, segment paths, opening for append, crash recovery (a torn tail
/// cut off), and whole-buffer writes.
extension Spool {
    // MARK: Files

    static func stateFile(_ state: State) -> StateFile {
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
    func writeStateFile(_ file: StateFile) -> Bool {
        let path = self.configuration.directory + "/state.json"
        let failure: (any Error)? = self.stateFileLock.withLock { _ in
            do {
                let data = try JSONEncoder().encode(file)
                let temporary = path + ".tmp"
                guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else {
                    throw SpoolError(.io, "cannot write \(temporary): \(Self.lastError())")
                }
                guard rename(temporary, path) == 0 else { throw SpoolError(.io, "cannot rename \(temporary) to \(path): \(Self.lastError())") }
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

    static func readStateFile(_ directory: String) -> StateFile? {
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

    static func openForAppending(_ path: String) throws(SpoolError) -> Int32 {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SpoolError(.io, "cannot open \(path) for appending: \(Self.lastError())") }
        return descriptor
    }

    /// Cuts a torn tail off the file; returns the size kept.
    static func recoverTail(path: String, size: Int) throws(SpoolError) -> Int {
        guard let data = FileManager.default.contents(atPath: path) else { throw SpoolError(.io, "cannot read \(path): \(Self.lastError())") }
        let end = data.lastIndex(of: UInt8(ascii: "\n")).map { $0 - data.startIndex + 1 } ?? 0
        if end < data.count, truncate(path, off_t(end)) != 0 {
            throw SpoolError(.io, "cannot cut the torn tail of \(path): \(Self.lastError())")
        }
        return end
    }

    /// The channel position of the last record of every subscription in the first `size` bytes of a segment
    /// file (unreadable lines are skipped here and counted when delivery reads them).
    static func lastPositions(path: String, size: Int) -> [String: ChannelPosition] {
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

    static func writeAll(_ buffer: ByteBuffer, to descriptor: Int32, sync: Bool) throws(SpoolError) {
        let failure: SpoolError? = buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return SpoolError(.io, "write failed: \(Self.lastError())")
                }
                offset += written
            }
            return nil
        }
        if let failure { throw failure }
        if sync, fsync(descriptor) != 0 { throw SpoolError(.io, "fsync failed: \(Self.lastError())") }
    }

    static func lastError() -> String { String(cString: strerror(errno)) }
}
