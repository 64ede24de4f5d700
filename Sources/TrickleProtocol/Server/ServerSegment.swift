import NIOCore
import Synchronization

/// One segment held by the embedded server: the bytes received so far, and whether it ended.
///
/// Readers start at byte 0 and then follow new bytes as they arrive (`trickle-protocol.md` §7). Any number of
/// readers may wait; each keeps its own position (an index into `chunks`).
final class ServerSegment: Sendable {
    /// A snapshot of what a reader may consume after waiting.
    struct ReadResult {
        /// The new chunks, copied out of the segment (a slice would share its storage, and the next append would
        /// then copy every chunk the segment holds: quadratic in chunks per segment, which the SDK's one chunk
        /// per line makes tens of thousands).
        var chunks: [ByteBuffer]
        var isClosed: Bool
        var isChannelClosed: Bool
    }

    /// How a segment ended.
    struct Snapshot: Equatable {
        var version: Int
        var byteCount: Int
        var isClosed: Bool
        var isChannelClosed: Bool
    }

    private struct State {
        var chunks: [ByteBuffer] = []
        var byteCount = 0
        var isClosed = false
        var isChannelClosed = false
        /// When its writer vanished part-way (the segment stays open for a re-send to continue it).
        var writerVanishedAt: ContinuousClock.Instant?
        var version = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiterID = 0

        mutating func takeWaiters() -> [CheckedContinuation<Void, Never>] {
            self.version += 1
            defer { self.waiters = [:] }
            return Array(self.waiters.values)
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
    private let state = Mutex(State())
    /// Fulfilled once, when the segment ends: what its writer waits on (not every appended chunk).
    private let closed = OneShotSignal<Void>()
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
            Snapshot(version: $0.version, byteCount: $0.byteCount, isClosed: $0.isClosed, isChannelClosed: $0.isChannelClosed)
        }
    }

    /// Appends bytes, reserving them against the server's retained-bytes bound.
    func append(_ chunk: ByteBuffer) -> AppendResult {
        let result: Result<[CheckedContinuation<Void, Never>], AppendFailure> = self.state.withLock { state in
            guard !state.isClosed else { return .failure(.closed) }
            if let accounting = self.accounting, !accounting.reserve(chunk.readableBytes) { return .failure(.overCapacity) }
            state.chunks.append(chunk)
            state.byteCount += chunk.readableBytes
            return .success(state.takeWaiters())
        }
        switch result {
        case .success(let waiters):
            for waiter in waiters { waiter.resume() }
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
    func markWriterVanished(at now: ContinuousClock.Instant = .now) {
        self.state.withLock { state in
            if !state.isClosed { state.writerVanishedAt = now }
        }
    }

    /// When the writer vanished, if it did and no one took over since.
    var writerVanishedAt: ContinuousClock.Instant? { self.state.withLock { $0.writerVanishedAt } }

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

    /// Ends the segment, waking every reader and a waiting writer. Idempotent.
    func close(becauseChannelClosed: Bool = false) {
        let waiters: [CheckedContinuation<Void, Never>] = self.state.withLock { state in
            guard !state.isClosed else { return [] }
            state.isClosed = true
            state.isChannelClosed = becauseChannelClosed
            return state.takeWaiters()
        }
        for waiter in waiters { waiter.resume() }
        self.closed.fulfill(())
    }

    /// Waits until the segment ends (or the task is cancelled).
    func waitUntilClosed() async {
        _ = await self.closed.wait()
    }

    /// Waits until there are chunks at or after `index`, or the segment is closed.
    func read(fromChunk index: Int) async -> ReadResult {
        while true {
            let outcome: Result<ReadResult, Never>?
            var version = 0
            outcome = self.state.withLock { state in
                if index < state.chunks.count || state.isClosed {
                    return .success(
                        ReadResult(
                            chunks: Array(state.chunks[min(index, state.chunks.count)...]),
                            isClosed: state.isClosed,
                            isChannelClosed: state.isChannelClosed
                        )
                    )
                }
                version = state.version
                return nil
            }
            if case .success(let result) = outcome { return result }
            if Task.isCancelled { return ReadResult(chunks: [], isClosed: true, isChannelClosed: false) }
            await self.waitForChange(after: version)
        }
    }

    /// Waits until the segment changes (bytes appended or closed) after `version`, or the task is cancelled.
    /// - Returns: Whether it changed.
    @discardableResult
    func waitForChange(after version: Int) async -> Bool {
        let id = self.state.withLock { state -> Int in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.version != version || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
        return self.snapshot.version != version
    }
}
