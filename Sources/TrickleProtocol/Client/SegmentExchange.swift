import NIOCore
import NIOHTTP1
import Synchronization
import TrickleRelaySupport

/// One GET on a ``SegmentConnection``: its reply head, then its body chunks, handed from the event loop to the
/// reading task directly (no response state machine or async sequence in between: a subscriber at the live edge
/// gets one small chunk per line, and what each chunk costs on its way is most of what a follower costs).
///
/// The event-loop side (``SegmentConnectionHandler``) calls the `receive` methods; the reading task awaits
/// ``head()`` and then ``next()`` until `nil`. Bytes the reader has not taken are bounded: above
/// ``highWatermark`` the connection stops reading from its socket (TCP back-pressure on the server) until the
/// reader is below ``lowWatermark``.
final class SegmentExchange: Sendable {
    static let highWatermark = 1 << 20
    static let lowWatermark = 256 << 10

    private struct State {
        var head: HTTPResponseHead?
        var reusable = false
        var headWaiter: CheckedContinuation<HTTPResponseHead, any Error>?
        // Room for a few chunks, not CircularBuffer's default 16: a reader at the live edge rarely has more than one
        // waiting, and every followed channel holds one (at 10,000 channels, 3 MiB less); it grows when needed.
        var chunks = CircularBuffer<ByteBuffer>(initialCapacity: 4)
        var bufferedBytes = 0
        var ended = false
        var failure: (any Error)?
        var bodyWaiter: CheckedContinuation<ByteBuffer?, any Error>?
        var holdsRead = false
    }

    let channel: any Channel
    let request: HTTPRequestHead
    private let state = RelayMutex(State())

    init(channel: any Channel, request: HTTPRequestHead) {
        self.channel = channel
        self.request = request
    }

    /// Whether the reply ended with its last byte in (the connection can carry the next GET).
    var endedCleanly: Bool { self.state.withLock { $0.ended && $0.failure == nil } }

    // MARK: Event loop side

    /// Whether the reply's framing lets the connection carry another GET (``SegmentReplyParser``).
    var isReusable: Bool { self.state.withLock { $0.reusable } }

    func receive(head: HTTPResponseHead, reusable: Bool) {
        let waiter: CheckedContinuation<HTTPResponseHead, any Error>? = self.state.withLock { state in
            guard state.head == nil, state.failure == nil else { return nil }
            state.head = head
            state.reusable = reusable
            defer { state.headWaiter = nil }
            return state.headWaiter
        }
        waiter?.resume(returning: head)
    }

    func receive(body chunk: ByteBuffer) {
        let waiter: CheckedContinuation<ByteBuffer?, any Error>? = self.state.withLock { state in
            guard state.failure == nil, !state.ended else { return nil }
            if let waiter = state.bodyWaiter {
                state.bodyWaiter = nil
                return waiter
            }
            state.chunks.append(chunk)
            state.bufferedBytes += chunk.readableBytes
            return nil
        }
        waiter?.resume(returning: chunk)
    }

    func receiveEnd() {
        let waiter: CheckedContinuation<ByteBuffer?, any Error>? = self.state.withLock { state in
            guard state.failure == nil, !state.ended else { return nil }
            state.ended = true
            defer { state.bodyWaiter = nil }
            return state.bodyWaiter
        }
        waiter?.resume(returning: nil)
    }

    /// Ends the exchange with `error` unless its reply already ended (a connection closing after a complete
    /// reply is not a failure of that reply).
    func fail(_ error: any Error) {
        let waiters: (CheckedContinuation<HTTPResponseHead, any Error>?, CheckedContinuation<ByteBuffer?, any Error>?) =
            self.state.withLock { state in
                guard state.failure == nil, !state.ended else { return (nil, nil) }
                state.failure = error
                defer {
                    state.headWaiter = nil
                    state.bodyWaiter = nil
                }
                return (state.headWaiter, state.bodyWaiter)
            }
        waiters.0?.resume(throwing: error)
        waiters.1?.resume(throwing: error)
    }

    /// Whether the connection should stop reading for now (the reader is more than ``highWatermark`` behind);
    /// the reader asks for the next read once it caught up.
    func holdsRead() -> Bool {
        self.state.withLock { state in
            guard state.bufferedBytes > Self.highWatermark else { return false }
            state.holdsRead = true
            return true
        }
    }

    // MARK: Reader side

    /// The reply head; throws when the connection failed or closed first, or the task was cancelled.
    func head(isolation: isolated (any Actor)? = #isolation) async throws -> HTTPResponseHead {
        try await withTaskCancellationHandler {
            _ = isolation  // the operation keeps the caller's isolation only when it captures it
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponseHead, any Error>) in
                let ready: Result<HTTPResponseHead, any Error>? = self.state.withLock { state in
                    if let head = state.head { return .success(head) }
                    if let failure = state.failure { return .failure(failure) }
                    state.headWaiter = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            self.channel.close(promise: nil)
        }
    }

    /// The next body chunk, or `nil` at the end of the reply.
    ///
    /// It runs where its caller runs: a resumed chunk costs the reading task one enqueue, on its own executor.
    func next(isolation: isolated (any Actor)? = #isolation) async throws -> ByteBuffer? {
        var resumeReading = false
        let ready: Result<ByteBuffer?, any Error>? = self.state.withLock { Self.take(&$0, resumeReading: &resumeReading) }
        if resumeReading { self.channel.read() }
        if let ready { return try ready.get() }
        return try await withTaskCancellationHandler {
            _ = isolation  // the operation keeps the caller's isolation only when it captures it
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ByteBuffer?, any Error>) in
                var resumeReading = false
                let ready: Result<ByteBuffer?, any Error>? = self.state.withLock { state in
                    let ready = Self.take(&state, resumeReading: &resumeReading)
                    if ready == nil { state.bodyWaiter = continuation }
                    return ready
                }
                if resumeReading { self.channel.read() }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            self.channel.close(promise: nil)
        }
    }

    /// What the reader gets now: a chunk, the end (`nil`), the failure, or — when it must wait — `nil`. Asks for
    /// reading to resume once the reader is below ``lowWatermark`` (and always before it waits).
    private static func take(_ state: inout State, resumeReading: inout Bool) -> Result<ByteBuffer?, any Error>? {
        if let chunk = state.chunks.popFirst() {
            state.bufferedBytes -= chunk.readableBytes
            if state.holdsRead, state.bufferedBytes < Self.lowWatermark {
                state.holdsRead = false
                resumeReading = true
            }
            return .success(chunk)
        }
        if let failure = state.failure { return .failure(failure) }
        if state.ended { return .success(nil) }
        if state.holdsRead {
            state.holdsRead = false
            resumeReading = true
        }
        return nil
    }
}

/// The connection closed before its reply was complete.
struct SegmentConnectionClosed: Error, CustomStringConvertible {
    var description: String { "the trickle server closed the connection before the reply was complete" }
}
