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
    }

    typealias Observer = @Sendable () -> Void

    private struct State {
        var chunks: [ByteBuffer] = []
        var byteCount = 0
        var isClosed = false
        var isChannelClosed = false
        /// When its writer vanished part-way (the segment stays open for a re-send to continue it).
        var writerVanishedAt: RelayClock.Instant?
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
        self.state.withLock { Snapshot(byteCount: $0.byteCount, isClosed: $0.isClosed, isChannelClosed: $0.isChannelClosed) }
    }

    /// Appends bytes, reserving them against the server's retained-bytes bound, and calls the readers waiting
    /// at the live edge.
    func append(_ chunk: ByteBuffer) -> AppendResult {
        let result: Result<[Observer], AppendFailure> = self.state.withLock { state in
            guard !state.isClosed else { return .failure(.closed) }
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
        }
    }

    private enum AppendFailure: Error {
        case closed, overCapacity
    }

    /// Notes that the POST writing this segment broke part-way. The segment stays open: a re-send of the same seq
    /// continues it (see ``takeOverFromVanishedWriter()``), a later segment starting or a timeout ends it.
    func markWriterVanished(at now: RelayClock.Instant) {
        self.state.withLock { state in
            if !state.isClosed { state.writerVanishedAt = now }
        }
    }

    /// When the writer vanished, if it did and no one took over since.
    var writerVanishedAt: RelayClock.Instant? { self.state.withLock { $0.writerVanishedAt } }

    /// A new POST of this seq takes the segment over from a writer that vanished: returns how many bytes the
    /// segment already holds (the re-sent body repeats them from its first byte and they are skipped), or `nil`
    /// when no writer vanished (then the POST appends as go-livepeer does).
    func takeOverFromVanishedWriter() -> Int? {
        self.state.withLock { state in
            guard !state.isClosed, state.writerVanishedAt != nil else { return nil }
            state.writerVanishedAt = nil
            return state.byteCount
        }
    }

    /// Ends the segment, calling every waiting reader and its writer. Idempotent.
    func close(becauseChannelClosed: Bool = false) {
        let observers: [Observer] = self.state.withLock { state in
            guard !state.isClosed else { return [] }
            state.isClosed = true
            state.isChannelClosed = becauseChannelClosed
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
