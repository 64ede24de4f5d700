import DequeModule
import NIOCore
import Synchronization
import TrickleRelaySupport

/// The streamed body of one segment POST: bytes appended by the publisher, pulled by the HTTP client.
///
/// Each attempt's request gets its own ``Attempt`` (``attempt()``), fixed to that attempt when the publisher makes
/// the request — not when the HTTP client first pulls: AsyncHTTPClient makes its body iterator in a task of its own,
/// which may start only after the request already failed and the next attempt began. An iterator made then would
/// belong to the live attempt and take its first chunks into a dead connection: the re-send would lack the
/// segment's head (seen under CPU load: 10–30 events gone, counted as delivered).
///
/// `append` is synchronous so that the order of bytes is fixed by the caller; `waitForCapacity` then applies
/// back-pressure once more than `highWatermark` bytes wait to be sent. The pipe keeps every byte of its segment
/// (up to `retentionLimit`) until the upload is acknowledged, so a failed attempt can be repeated from the first
/// byte (``rewind()``): a trickle server that restarted gets the whole segment again, not its tail.
final class SegmentBodyPipe: Sendable {
    private struct State {
        /// Every chunk of the segment while it can still be re-sent; only the unsent ones once it cannot.
        var chunks: Deque<ByteBuffer> = []
        /// Index in `chunks` of the next chunk to hand out.
        var next = 0
        var canRewind = true
        /// The attempt whose request may pull bytes; iterators of earlier attempts get nothing more. (A failed
        /// request's body may still be pulled for a moment after the next attempt started: a chunk handed to it
        /// would be lost to the live request.)
        var generation = 0
        var appendedBytes = 0
        /// Bytes handed out in the current attempt.
        var deliveredBytes = 0
        /// Where in the segment the next chunk handed out starts (0 again after a rewind).
        var offset = 0
        /// The furthest any attempt got.
        var furthestOffset = 0

        /// Bytes appended and never handed out in any attempt: what back-pressure counts. Bytes held only for a
        /// re-send do not count — `retentionLimit` bounds them — or a publisher would stop taking new lines for
        /// as long as a restarting server is away.
        var bufferedBytes: Int { self.appendedBytes - self.furthestOffset }

        mutating func handedOut(_ count: Int) {
            self.deliveredBytes += count
            self.offset += count
            self.furthestOffset = Swift.max(self.furthestOffset, self.offset)
        }
        var isFinished = false
        var failure: (any Error)?
        /// The current attempt's request waiting for bytes.
        var consumer: CheckedContinuation<ByteBuffer?, Never>?
        /// Whether the current attempt's body was iterated already: an attempt has one iterator; another gets nothing.
        var iterated = false
        var producers: [Int: CheckedContinuation<Void, any Error>] = [:]
        var nextProducerID = 0
    }

    private let state = RelayMutex(State())
    let highWatermark: Int
    /// Bytes kept for a re-send at most; past it the segment can no longer be re-sent.
    let retentionLimit: Int
    /// The previous segment's upload result: no byte of this body goes out before the previous segment is
    /// complete, so the server sees segments start in seq order even though they travel on separate
    /// connections (nextWrite follows the *last* first byte, `trickle-protocol.md` §1).
    private let predecessor: OneShotSignal<SegmentUpload.Result>?

    init(highWatermark: Int, retentionLimit: Int = 0, predecessor: OneShotSignal<SegmentUpload.Result>?) {
        self.highWatermark = highWatermark
        self.retentionLimit = retentionLimit
        self.predecessor = predecessor
    }

    /// Whether every byte of the segment is still held, so that ``rewind()`` can repeat it.
    var canRewind: Bool { self.state.withLock { $0.canRewind } }

    /// Starts a new attempt: from the first byte of the segment when bytes already went out (`false`, nothing
    /// changed, when they did and the segment outgrew the retention limit). Iterators of earlier attempts end.
    func rewind() -> Bool {
        let (rewound, consumer): (Bool, CheckedContinuation<ByteBuffer?, Never>?) = self.state.withLock { state in
            guard state.failure == nil, state.deliveredBytes == 0 || state.canRewind else { return (false, nil) }
            state.generation += 1
            if state.canRewind {
                state.next = 0
                state.offset = 0
            }
            state.deliveredBytes = 0
            state.iterated = false
            defer { state.consumer = nil }
            return (true, state.consumer)
        }
        consumer?.resume(returning: nil)
        return rewound
    }

    /// The body of the attempt starting now: its iterator hands out the segment from where this attempt starts, and
    /// ends (aborting its request) as soon as a later attempt starts (``rewind()``) — however late it is made.
    func attempt() -> Attempt {
        Attempt(pipe: self, generation: self.state.withLock { $0.generation })
    }

    /// Whether an attempt's request waits for the next bytes (tests wait on it).
    var hasWaitingConsumer: Bool { self.state.withLock { $0.consumer != nil } }

    /// Bytes appended so far.
    var appendedBytes: Int { self.state.withLock { $0.appendedBytes } }
    /// Bytes handed to the HTTP client so far.
    var deliveredBytes: Int { self.state.withLock { $0.deliveredBytes } }
    /// Whether `finish()` was called (the body ends normally).
    var isFinished: Bool { self.state.withLock { $0.isFinished } }
    /// The failure, if `fail(_:)` was called (the body aborts).
    var failure: (any Error)? { self.state.withLock { $0.failure } }

    /// Appends a chunk. Throws the pipe's failure if the upload already failed.
    func append(_ chunk: ByteBuffer) throws {
        let consumer: CheckedContinuation<ByteBuffer?, Never>? = try self.state.withLock { state in
            if let failure = state.failure { throw failure }
            precondition(!state.isFinished, "append after finish")
            state.appendedBytes += chunk.readableBytes
            if state.canRewind && state.appendedBytes > self.retentionLimit {
                // Too big to keep whole: from now on only unsent chunks are held, and a failure is final.
                state.canRewind = false
                state.chunks.removeFirst(state.next)
                state.next = 0
            }
            if let consumer = state.consumer {
                state.consumer = nil
                state.handedOut(chunk.readableBytes)
                if state.canRewind {
                    state.chunks.append(chunk)
                    state.next = state.chunks.count
                }
                return consumer
            }
            state.chunks.append(chunk)
            return nil
        }
        consumer?.resume(returning: chunk)
    }

    /// Suspends while more than `highWatermark` bytes wait to be sent.
    func waitForCapacity() async throws {
        let id = self.state.withLock { state -> Int in
            state.nextProducerID += 1
            return state.nextProducerID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let result: Result<Void, any Error>? = self.state.withLock { state in
                    if let failure = state.failure { return .failure(failure) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if state.bufferedBytes <= self.highWatermark || state.isFinished { return .success(()) }
                    state.producers[id] = continuation
                    return nil
                }
                if let result { continuation.resume(with: result) }
            }
        } onCancel: {
            let producer = self.state.withLock { $0.producers.removeValue(forKey: id) }
            producer?.resume(throwing: CancellationError())
        }
    }

    /// Ends the body: the HTTP client sees end of stream once it drained what was appended.
    func finish() {
        let consumer: CheckedContinuation<ByteBuffer?, Never>? = self.state.withLock { state in
            state.isFinished = true
            defer { state.consumer = nil }
            return state.next >= state.chunks.count ? state.consumer : nil
        }
        consumer?.resume(returning: nil)
    }

    /// Fails the pipe: pending and later `append`/`waitForCapacity` calls throw `error`, and the body *aborts*
    /// (its iterator throws), so the HTTP client drops the request instead of ending it as a complete segment.
    func fail(_ error: any Error) {
        let (consumer, producers) = self.state.withLock { state in
            if state.failure == nil { state.failure = error }
            state.chunks.removeAll()
            state.next = 0
            state.canRewind = false
            defer {
                state.consumer = nil
                state.producers = [:]
            }
            return (state.consumer, Array(state.producers.values))
        }
        consumer?.resume(returning: nil)
        for producer in producers { producer.resume(throwing: error) }
    }

    /// The next chunk of attempt `generation`; `nil` only when that attempt handed out the whole finished segment.
    /// Any other end — a failure, a newer attempt (``rewind()``), cancellation — *aborts* the body (throws): an
    /// HTTP client ends a body that returns `nil` as complete, and a server then closes the segment on the bytes it
    /// got, a cut one taken for whole (its readers see a torn last line, and the rest of the segment is lost).
    private func next(generation: Int) async throws -> ByteBuffer? {
        if let chunk = await self.nextChunk(generation: generation) { return chunk }
        let failure: (any Error)? = self.state.withLock { state in
            if let failure = state.failure { return failure }
            let complete = state.generation == generation && state.isFinished && state.next >= state.chunks.count
            return complete ? nil : SupersededAttempt()
        }
        if let failure { throw failure }
        return nil
    }

    /// A body pulled for an attempt that is no longer the current one (or was cancelled): it aborts.
    struct SupersededAttempt: Error {}

    /// Whether every byte of the finished segment went out: in this attempt, or (a segment too big to repeat) in
    /// the attempts before it.
    var handedOutEverything: Bool {
        self.state.withLock { $0.isFinished && $0.offset == $0.appendedBytes }
    }

    private func nextChunk(generation: Int) async -> ByteBuffer? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ByteBuffer?, Never>) in
                enum Immediate {
                    case chunk(ByteBuffer, [CheckedContinuation<Void, any Error>])
                    case end
                }
                let immediate: Immediate? = self.state.withLock { state in
                    if state.failure != nil || Task.isCancelled || generation != state.generation { return .end }
                    if state.next < state.chunks.count {
                        let chunk = state.chunks[state.next]
                        if state.canRewind {
                            state.next += 1
                        } else {
                            state.chunks.removeFirst()
                        }
                        state.handedOut(chunk.readableBytes)
                        var woken: [CheckedContinuation<Void, any Error>] = []
                        if state.bufferedBytes <= self.highWatermark {
                            woken = Array(state.producers.values)
                            state.producers = [:]
                        }
                        return .chunk(chunk, woken)
                    }
                    if state.isFinished { return .end }
                    // The attempt's one iterator waits here; `consumer` is never another attempt's (a rewind
                    // resumes and clears it before the generation moves on).
                    guard state.consumer == nil else { return .end }
                    state.consumer = continuation
                    return nil
                }
                switch immediate {
                case .chunk(let chunk, let woken):
                    for producer in woken { producer.resume() }
                    continuation.resume(returning: chunk)
                case .end:
                    continuation.resume(returning: nil)
                case nil:
                    break
                }
            }
        } onCancel: {
            // Only this attempt's waiting request: a cancelled earlier attempt must not end the live one's body.
            let consumer = self.state.withLock { state -> CheckedContinuation<ByteBuffer?, Never>? in
                guard state.generation == generation else { return nil }
                defer { state.consumer = nil }
                return state.consumer
            }
            consumer?.resume(returning: nil)
        }
    }

    /// One attempt's request body.
    struct Attempt: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let pipe: SegmentBodyPipe
        let generation: Int

        struct AsyncIterator: AsyncIteratorProtocol {
            let pipe: SegmentBodyPipe
            let generation: Int
            /// `false` for a second iterator of the attempt, or one made after a later attempt started: it aborts.
            let isFirst: Bool
            var waitedForPredecessor = false

            mutating func next() async throws -> ByteBuffer? {
                guard self.isFirst else { throw SupersededAttempt() }
                if !self.waitedForPredecessor {
                    self.waitedForPredecessor = true
                    _ = await self.pipe.predecessor?.wait()
                }
                return try await self.pipe.next(generation: self.generation)
            }
        }

        func makeAsyncIterator() -> AsyncIterator {
            let isFirst = self.pipe.state.withLock { state -> Bool in
                guard state.generation == self.generation, !state.iterated else { return false }
                state.iterated = true
                return true
            }
            return AsyncIterator(pipe: self.pipe, generation: self.generation, isFirst: isFirst)
        }
    }
}
