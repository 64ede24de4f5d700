import NIOCore
import Synchronization
import TrickleRelaySupport

/// One channel on the embedded server: the ring of retained segments and the nextWrite cursor.
///
/// Semantics follow go-livepeer's `trickle/` server (`trickle-protocol.md` §1, §5, §6).
final class ServerChannel: Sendable {
    /// What a GET on a seq resolves to.
    enum ReadResolution {
        /// Serve this segment (complete, in progress, or a placeholder to wait on).
        case segment(ServerSegment, latestAtAccept: Int)
        /// 470: the seq is not retained (evicted, skipped, or ahead of nextWrite+1).
        case notRetained(seq: Int, latest: Int)
        /// The channel was closed.
        case closed
    }

    /// What a POST on a seq resolves to.
    enum WriteResolution {
        case segment(ServerSegment)
        /// The segment is already complete: GL answers 200 and discards the new body (§5).
        case alreadyComplete(seq: Int)
        /// The segment ended cut short while its writer was away: a re-send arrived too late to continue it.
        case endedInterrupted(seq: Int)
        case closed
        /// `POST -1` when nextWrite is past the last seq (2^53−1): there is no next seq to hand out.
        case seqsExhausted
    }

    private struct State {
        var nextWrite = 0
        var ring: [ServerSegment?]
        var lastSegmentStart: RelayClock.Instant
        var isClosed = false

        /// The lowest retained seq ≥ `seq` whose segment holds bytes, if any.
        func firstRetainedSeqWithData(from seq: Int) -> Int? {
            var first: Int?
            for case let segment? in self.ring where segment.seq >= seq && segment.snapshot.byteCount > 0 {
                if first.map({ segment.seq < $0 }) ?? true { first = segment.seq }
            }
            return first
        }
    }

    let name: String
    let mimeType: String
    private let state: RelayMutex<State>
    private let accounting: ServerAccounting?
    private let readers = Atomic<Int>(0)
    private let writers = Atomic<Int>(0)

    /// GETs being served on this channel right now (waiting or streaming).
    var activeReaders: Int { self.readers.load(ordering: .relaxed) }
    /// Segment POSTs in progress on this channel right now (preconnected or streaming).
    var activeWriters: Int { self.writers.load(ordering: .relaxed) }

    func readerStarted() { self.readers.add(1, ordering: .relaxed) }
    func readerEnded() { self.readers.subtract(1, ordering: .relaxed) }
    func writerStarted() { self.writers.add(1, ordering: .relaxed) }
    func writerEnded() { self.writers.subtract(1, ordering: .relaxed) }

    init(name: String, mimeType: String, ringSize: Int, now: RelayClock.Instant, accounting: ServerAccounting? = nil) {
        self.name = name
        self.mimeType = mimeType
        self.accounting = accounting
        self.state = RelayMutex(State(ring: Array(repeating: nil, count: ringSize), lastSegmentStart: now))
    }

    var nextWrite: Int { self.state.withLock { $0.nextWrite } }

    var lastSegmentStart: RelayClock.Instant { self.state.withLock { $0.lastSegmentStart } }

    /// Resolves a GET. `seq` is ≥ -2 (validated by the router).
    func resolveRead(seq requested: Int) -> ReadResolution {
        var evicted: ServerSegment?
        defer { evicted?.close() }
        return self.state.withLock { state in
            let seq: Int
            switch requested {
            case -1: seq = state.nextWrite
            case -2: seq = max(state.nextWrite - 1, 0)
            default: seq = requested
            }
            let slot = seq % state.ring.count
            if state.isClosed {
                // A closed channel still serves the segments it retained (see `close()`) while its grace period
                // lasts. A reader asking for a seq it no longer holds (evicted before the close, or never written
                // here: a server that restarted) is told where the retained tail starts — a `470` it counts as a
                // gap — instead of `Closed`, which would end it silently short of the tail.
                guard let tail = state.firstRetainedSeqWithData(from: seq) else { return .closed }
                if let segment = state.ring[slot], segment.seq == seq {
                    // The tail itself, or an empty segment before it (deleted seq, empty POST): served, read past.
                    return .segment(segment, latestAtAccept: state.nextWrite)
                }
                return .notRetained(seq: seq, latest: tail)
            }
            if let segment = state.ring[slot], segment.seq == seq {
                return .segment(segment, latestAtAccept: state.nextWrite)
            }
            // GET on nextWrite waits on a pre-created placeholder; so does GET 1 on a fresh channel (§5).
            if seq == state.nextWrite || (seq == 1 && state.nextWrite == 0) {
                let placeholder = ServerSegment(seq: seq, accounting: self.accounting)
                evicted = state.ring[slot]
                state.ring[slot] = placeholder
                return .segment(placeholder, latestAtAccept: state.nextWrite)
            }
            return .notRetained(seq: seq, latest: state.nextWrite)
        }
    }

    /// Resolves a POST. `seq` is ≥ -1 (validated by the router).
    ///
    /// - Parameter reset: `Lp-Trickle-Reset` was sent: close every retained segment below this seq.
    func resolveWrite(seq requested: Int, reset: Bool) -> WriteResolution {
        var toClose: [ServerSegment] = []
        defer { for segment in toClose { segment.close() } }
        return self.state.withLock { state in
            guard !state.isClosed else { return .closed }
            // Both reference servers mishandle `POST -1` in some way (HT rewinds to 0, §5); ours resolves it
            // to nextWrite like go-livepeer and says which seq it used in `Lp-Trickle-Seq`.
            let seq = requested == -1 ? state.nextWrite : requested
            guard seq <= TrickleSeq.maximum else { return .seqsExhausted }
            if reset {
                for case let segment? in state.ring where segment.seq < seq { toClose.append(segment) }
            }
            let slot = seq % state.ring.count
            if let segment = state.ring[slot], segment.seq == seq {
                let snapshot = segment.snapshot
                if snapshot.isClosed && snapshot.byteCount > 0 {
                    return snapshot.endedInterrupted ? .endedInterrupted(seq: seq) : .alreadyComplete(seq: seq)
                }
                if !snapshot.isClosed { return .segment(segment) }
            }
            // A POST eviction also closes the evicted segment (§6).
            if let old = state.ring[slot] { toClose.append(old) }
            let segment = ServerSegment(seq: seq, accounting: self.accounting)
            state.ring[slot] = segment
            return .segment(segment)
        }
    }

    /// The first byte of a POST to `seq` arrived: nextWrite moves to `seq + 1` (last first-byte wins, §1).
    ///
    /// Earlier segments whose writer vanished part-way end now: the publisher moved on without re-sending them,
    /// so their readers must not wait any longer.
    func noteSegmentStarted(seq: Int, now: RelayClock.Instant) {
        // `seq` is ≤ TrickleSeq.maximum (the router refuses more), so `seq + 1` cannot overflow.
        let abandoned: [ServerSegment] = self.state.withLock { state in
            state.nextWrite = seq + 1
            state.lastSegmentStart = now
            return state.ring.compactMap { segment in
                guard let segment, segment.seq < seq, segment.writerVanishedAt != nil else { return nil }
                return segment
            }
        }
        for segment in abandoned { segment.close() }
    }

    /// Ends segments whose writer vanished longer than `timeout` ago with no re-send (a publisher that died).
    func closeAbandonedSegments(olderThan timeout: Duration, now: RelayClock.Instant) {
        let abandoned: [ServerSegment] = self.state.withLock { state in
            state.ring.compactMap { segment in
                guard let segment, let since = segment.writerVanishedAt, now - since >= timeout else { return nil }
                return segment
            }
        }
        for segment in abandoned { segment.close() }
    }

    /// Writes `bytes` as the next segment, whole and closed (the server's own channels: `_changes`).
    func writeWholeSegment(_ bytes: ByteBuffer, now: RelayClock.Instant) {
        guard case .segment(let segment) = self.resolveWrite(seq: -1, reset: false) else { return }
        self.noteSegmentStarted(seq: segment.seq, now: now)
        _ = segment.append(bytes, writer: segment.attachWriter().token)
        segment.close()
    }

    /// A POST to `seq` ended with zero bytes: go-livepeer still moves nextWrite past it (§1).
    func noteEmptySegment(seq: Int) {
        self.state.withLock { state in
            if state.nextWrite <= seq { state.nextWrite = seq + 1 }
        }
    }

    /// Closes segment `seq` now (DELETE of a seq). Returns `false` if it is not in the ring.
    func closeSegment(seq: Int) -> Bool {
        let segment: ServerSegment? = self.state.withLock { state in
            guard seq >= 0, let segment = state.ring[seq % state.ring.count], segment.seq == seq else { return nil }
            return segment
        }
        segment?.close()
        return segment != nil
    }

    /// Closes the channel: every retained segment ends, waiting readers and writers are released (§7).
    ///
    /// The retained segments stay readable while the registry keeps the closed channel (its grace period), so
    /// a reader a segment behind the publisher's final DELETE still gets the tail instead of a 404.
    func close() {
        let segments: [ServerSegment] = self.state.withLock { state in
            state.isClosed = true
            return state.ring.compactMap { $0 }
        }
        for segment in segments { segment.close(becauseChannelClosed: true) }
    }

    var isClosed: Bool { self.state.withLock { $0.isClosed } }
}
