import NIOCore
import Synchronization
import TrickleRelaySupport

/// One segment held by the embedded server: the bytes received so far, and whether it ended.
///
/// Readers start at byte 0 and then follow new bytes as they arrive (`trickle-protocol.md` §7). Any number of
/// readers may wait; each keeps its own position (an index into the segment's chunks). Nothing here suspends:
/// a reader with nothing new registers a one-shot observer and is called once when bytes arrive or the segment
/// ends, however many chunks arrived in between (the connection handlers run on NIO event loops, and a wake-up
/// per appended chunk — the SDK's writer sends one per line — would be the whole cost of serving a line).
final class ServerSegment: Sendable {
    /// A snapshot of what a reader may consume.
    struct ReadResult {
        /// The new chunks, copied out of the segment (a slice would share its storage, and the next append would
        /// then copy every chunk the segment holds: quadratic in chunks per segment, which the SDK's one chunk
        /// per line makes tens of thousands).
        var chunks: [ByteBuffer]
        var isClosed: Bool
        var isChannelClosed: Bool
    }

    /// What ``read(fromChunk:orObserve:)`` found.
    enum ReadOrObserve {
        /// Chunks at or after the index, or the end.
        case available(ReadResult)
        /// Nothing yet: the observer with this id is called once on the next change.
        case observing(Int)
    }

    /// How a segment stands.
    struct Snapshot: Equatable {
        var byteCount: Int
        var isClosed: Bool
        var isChannelClosed: Bool
        /// It ended while its writer was away (a later segment started, or none came back in time): cut short.
        var endedInterrupted = false
    }

    typealias Observer = @Sendable () -> Void

    private struct State {
        var chunks: [ByteBuffer] = []
        var byteCount = 0
        var isClosed = false
        var isChannelClosed = false
        /// When its writer vanished part-way (the segment stays open for a re-send to continue it).
        var writerVanishedAt: RelayClock.Instant?
        /// Closed while its writer was away: a re-send arriving later finds it cut short.
        var endedInterrupted = false
        /// The token of the POST writing the segment now (each POST of the seq gets a new one); `nil` when none is.
        var activeWriter: Int?
        var lastWriterToken = 0
        /// Called once on the next append or close (readers at the live edge).
        var changeObservers: [Int: Observer] = [:]
        /// Called once when the segment ends (its writer).
        var closeObservers: [Int: Observer] = [:]
        var nextObserverID = 0

        mutating func takeChangeObservers() -> [Observer] {
            guard !self.changeObservers.isEmpty else { return [] }
            defer { self.changeObservers = [:] }
            return Array(self.changeObservers.values)
        }

        mutating func makeObserverID() -> Int {
            self.nextObserverID &+= 1
            return self.nextObserverID
        }
    }

    /// How ``append(_:)`` went.
    enum AppendResult: Equatable {
        case appended
        /// The segment is closed; the bytes were dropped.
        case closed
        /// The server's retained-bytes bound would be passed; the bytes were dropped.
        case overCapacity
        /// Another POST of the seq took the segment over: the bytes were dropped.
        case cutOff
    }

    let seq: Int
    private let state = RelayMutex(State())
    private let accounting: ServerAccounting?

    init(seq: Int, accounting: ServerAccounting? = nil) {
        self.seq = seq
        self.accounting = accounting
    }

    deinit {
        // The bytes are freed with the segment: the last reader or the ring let go of it.
        let bytes = self.state.withLock { $0.byteCount }
        self.accounting?.release(bytes)
    }

    var snapshot: Snapshot {
        self.state.withLock {
            Snapshot(byteCount: $0.byteCount, isClosed: $0.isClosed, isChannelClosed: $0.isChannelClosed, endedInterrupted: $0.endedInterrupted)
        }
    }

    /// Appends bytes from the writer holding `token` (``attachWriter()``), reserving them against the server's
    /// retained-bytes bound, and calls the readers waiting at the live edge.
    func append(_ chunk: ByteBuffer, writer token: Int) -> AppendResult {
        let result: Result<[Observer], AppendFailure> = self.state.withLock { state in
            guard !state.isClosed else { return .failure(.closed) }
            guard state.activeWriter == token else { return .failure(.cutOff) }
            if let accounting = self.accounting, !accounting.reserve(chunk.readableBytes) { return .failure(.overCapacity) }
            state.chunks.append(chunk)
            state.byteCount += chunk.readableBytes
            return .success(state.takeChangeObservers())
        }
        switch result {
        case .success(let observers):
            for observer in observers { observer() }
            return .appended
        case .failure(.closed): return .closed
        case .failure(.overCapacity): return .overCapacity
        case .failure(.cutOff): return .cutOff
        }
    }

    private enum AppendFailure: Error {
        case closed, overCapacity, cutOff
    }

    /// A POST of this seq starts writing: returns its token and how many bytes the segment already holds. Those
    /// come from an earlier POST of the seq — one whose connection broke, or one still attached because the server
    /// has not heard yet that it broke: the new POST is a re-send from the first byte, so they are checked against
    /// it and skipped (``firstDifference(_:at:cursor:)``), and the earlier writer is cut off (its late bytes, end or break no longer
    /// touch the segment).
    func attachWriter() -> (token: Int, alreadyHeld: Int) {
        self.state.withLock { state in
            state.lastWriterToken &+= 1
            state.activeWriter = state.lastWriterToken
            state.writerVanishedAt = nil
            return (state.lastWriterToken, state.byteCount)
        }
    }

    /// Whether `token` is the segment's writer now.
    func isWriter(_ token: Int) -> Bool { self.state.withLock { $0.activeWriter == token } }

    /// Notes that the POST writing this segment broke part-way (ignored from a writer cut off by a re-send). The
    /// segment stays open: a re-send of the same seq continues it, a later segment starting or a timeout ends it.
    func markWriterVanished(token: Int, at now: RelayClock.Instant) {
        self.state.withLock { state in
            guard !state.isClosed, state.activeWriter == token else { return }
            state.activeWriter = nil
            state.writerVanishedAt = now
        }
    }

    /// When the writer vanished, if it did and no one took over since.
    var writerVanishedAt: RelayClock.Instant? { self.state.withLock { $0.writerVanishedAt } }

    /// Ends the segment if `token` is still its writer (its body ended); `false`, nothing done, for a writer cut off.
    func closeByWriter(_ token: Int) -> Bool {
        let isWriter = self.state.withLock { state in
            guard state.activeWriter == token else { return false }
            state.activeWriter = nil
            return true
        }
        if isWriter { self.close() }
        return isWriter
    }

    /// Where a re-send's check stands in the segment's chunks: each re-sent chunk is compared from there, not from
    /// the segment's first chunk (a large segment held in many small chunks would cost O(chunks) per re-sent chunk).
    struct ResendCursor: Sendable {
        /// The chunk holding the next byte to compare, and where that chunk starts in the segment.
        fileprivate var chunk = 0
        fileprivate var chunkStart = 0
    }

    /// Where `bytes`, laid at `offset`, first differ from what the segment holds there (a re-send repeating what an
    /// interrupted writer sent); `nil` when the segment holds exactly them. One re-send compares its chunks in
    /// order, at offsets that only grow, with one `cursor`.
    func firstDifference(_ bytes: ByteBuffer, at offset: Int, cursor: inout ResendCursor) -> Int? {
        self.state.withLock { state in
            guard offset >= 0, offset <= state.byteCount, offset >= cursor.chunkStart else { return offset }
            var compared = 0
            // Chunks are only ever appended while the segment lives: the cursor stays valid between calls.
            while compared < bytes.readableBytes, cursor.chunk < state.chunks.count {
                let chunk = state.chunks[cursor.chunk]
                let chunkEnd = cursor.chunkStart + chunk.readableBytes
                guard chunkEnd > offset + compared else {
                    cursor.chunk += 1
                    cursor.chunkStart = chunkEnd
                    continue
                }
                let from = offset + compared - cursor.chunkStart
                let length = min(chunk.readableBytes - from, bytes.readableBytes - compared)
                let mismatch: Int? = chunk.withUnsafeReadableBytes { held in
                    bytes.withUnsafeReadableBytes { sent in
                        (0..<length).first { held[from + $0] != sent[compared + $0] }
                    }
                }
                if let mismatch { return offset + compared + mismatch }
                compared += length
            }
            return compared == bytes.readableBytes ? nil : offset + compared
        }
    }

    /// Ends the segment, calling every waiting reader and its writer. Idempotent.
    func close(becauseChannelClosed: Bool = false) {
        let observers: [Observer] = self.state.withLock { state in
            guard !state.isClosed else { return [] }
            state.isClosed = true
            state.isChannelClosed = becauseChannelClosed
            state.endedInterrupted = state.writerVanishedAt != nil
            defer { state.closeObservers = [:] }
            return state.takeChangeObservers() + Array(state.closeObservers.values)
        }
        for observer in observers { observer() }
    }

    /// Chunks at or after `index` (or the end) if there are any, about `maximumBytes` of them at most (always at
    /// least one); otherwise `observer` is registered and called once, from whichever thread appends the next
    /// bytes or ends the segment (it is only made then). `isClosed` is only set on the result that reaches the end.
    func read(fromChunk index: Int, maximumBytes: Int = .max, orObserve observer: @autoclosure () -> Observer) -> ReadOrObserve {
        self.state.withLock { state in
            if index < state.chunks.count || state.isClosed {
                var end = index
                var bytes = 0
                while end < state.chunks.count, end == index || bytes + state.chunks[end].readableBytes <= maximumBytes {
                    bytes += state.chunks[end].readableBytes
                    end += 1
                }
                let chunks = index < end ? Array(state.chunks[index..<end]) : []
                let reachesEnd = end >= state.chunks.count
                return .available(
                    ReadResult(chunks: chunks, isClosed: reachesEnd && state.isClosed, isChannelClosed: reachesEnd && state.isChannelClosed)
                )
            }
            let id = state.makeObserverID()
            state.changeObservers[id] = observer()
            return .observing(id)
        }
    }

    /// Registers `observer` to be called once when the segment ends; `nil` (and no call) if it already has.
    func observeClose(_ observer: @escaping Observer) -> Int? {
        self.state.withLock { state in
            guard !state.isClosed else { return nil }
            let id = state.makeObserverID()
            state.closeObservers[id] = observer
            return id
        }
    }

    /// Forgets an observer that was not called (its reader or writer went away first).
    func removeObserver(_ id: Int) {
        self.state.withLock { state in
            state.changeObservers[id] = nil
            state.closeObservers[id] = nil
        }
    }
}
