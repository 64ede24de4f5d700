import Dispatch
public import Logging
import NIOPosix
import Synchronization

/// Writes records to a ``StandardStreamWriter`` from a thread of its own, so a slow or stopped reader (a paused
/// terminal, `| less` left open, a full pipe) never blocks the caller: the client's dispatch path hands its local
/// lines here and goes on delivering to the sink.
///
/// A thread of its own, not a Dispatch queue: on Linux the Swift concurrency pool runs on Dispatch's default-QoS
/// root queue, and a queue's write blocked for as long as the reader is stopped would hold one of its workers —
/// with one more blocked (a slow DNS lookup, which NIO also runs on a Dispatch queue) every task of the process
/// stalls until Dispatch adds a thread, about once a second.
///
/// The queue is bounded in bytes: a record that would pass the bound is dropped and counted, a failure state
/// logged when it starts, at most once per interval while it lasts, and when it clears. A reader that went away
/// (`EPIPE`) closes the writer for good: later records are refused, not queued.
public final class QueuedStreamWriter: Sendable {
    /// What became of one record.
    public enum Outcome: Sendable, Equatable {
        /// Queued; it will be written unless the stream closes first.
        case queued
        /// Dropped: the reader is too far behind (the queue holds its maximum).
        case dropped
        /// Refused: the stream is closed (its reader went away).
        case closed
    }

    /// Counters of a writer.
    public struct Stats: Sendable, Hashable {
        /// Records written whole.
        public var written = 0
        /// Records dropped because the queue was full.
        public var dropped = 0
        /// Records refused or lost because the stream closed.
        public var closedOut = 0
    }

    private let stream: StandardStreamWriter
    /// One thread: records are written in the order they were queued.
    private let writerThread: NIOThreadPool
    private let maximumQueuedBytes: Int
    private let queuedBytes = Atomic<Int>(0)
    /// Set by the drain when a write fails. The caller's path reads only this flag, never the stream's own lock:
    /// the drain holds that lock for as long as a write to a stopped reader blocks.
    private let closed = Atomic(false)
    private let stats = RelayMutex(Stats())
    private let behind: FailureLog?

    /// - Parameters:
    ///   - maximumQueuedBytes: The most bytes waiting for the reader; default 4 MiB.
    ///   - logger: Where the "reader is behind" failure state is logged; `nil` for none.
    public init(_ stream: StandardStreamWriter, maximumQueuedBytes: Int = 4 * 1024 * 1024, logger: Logger? = nil) {
        self.stream = stream
        self.writerThread = NIOThreadPool(numberOfThreads: 1)
        self.writerThread.start()
        self.maximumQueuedBytes = max(1, maximumQueuedBytes)
        self.behind = logger.map { FailureLog("output reader not keeping up: records dropped", logger: $0) }
    }

    /// The counters so far.
    public var statistics: Stats { self.stats.withLock { $0 } }

    /// Whether the stream is closed (its reader went away).
    public var isClosed: Bool { self.closed.load(ordering: .relaxed) }

    /// Queues `record` (written whole, in order) without blocking.
    ///
    /// - Parameter whenDone: Called on the writing thread once a queued record was written (`true`) or could not
    ///   be (`false`: the stream closed first); not called for a record that was not queued.
    @discardableResult
    public func write(_ record: [UInt8], whenDone: (@Sendable (Bool) -> Void)? = nil) -> Outcome {
        if self.closed.load(ordering: .relaxed) {
            self.stats.withLock { $0.closedOut += 1 }
            return .closed
        }
        let size = record.count
        let (exchanged, _) = self.reserve(size)
        guard exchanged else {
            let dropped = self.stats.withLock { stats in
                stats.dropped += 1
                return stats.dropped
            }
            self.behind?.failed(reason: "the output queue holds \(self.maximumQueuedBytes) bytes", metadata: ["output.dropped_total": "\(dropped)"])
            return .dropped
        }
        self.writerThread.submit { _ in
            let ok = !self.closed.load(ordering: .relaxed) && self.stream.write(record)
            if !ok { self.closed.store(true, ordering: .relaxed) }
            let left = self.queuedBytes.wrappingSubtract(size, ordering: .relaxed).newValue
            self.stats.withLock { if ok { $0.written += 1 } else { $0.closedOut += 1 } }
            whenDone?(ok)
            if ok, left == 0 { self.behind?.cleared() }
        }
        return .queued
    }

    /// Waits until everything queued so far was written (or the stream closed), for at most `timeout`: before a
    /// process prints its summary and exits. A reader that stopped does not hold the exit.
    /// - Returns: Whether the queue was drained in time.
    @discardableResult
    public func drain(timeout: Duration) -> Bool {
        let done = DispatchSemaphore(value: 0)
        self.writerThread.submit { _ in done.signal() }
        let nanoseconds = timeout.components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let wait = nanoseconds.overflow ? Int.max : Int(clamping: nanoseconds.partialValue + timeout.components.attoseconds / 1_000_000_000)
        return done.wait(timeout: .now() + .nanoseconds(wait)) == .success
    }

    deinit {
        // Every queued record holds the writer, so none is left: the thread ends.
        self.writerThread.shutdownGracefully { _ in }
    }

    private func reserve(_ size: Int) -> (Bool, Int) {
        var current = self.queuedBytes.load(ordering: .relaxed)
        while true {
            // A record larger than the whole bound still goes through an empty queue (never refused for its size).
            guard current == 0 || current + size <= self.maximumQueuedBytes else { return (false, current) }
            let (exchanged, original) = self.queuedBytes.compareExchange(expected: current, desired: current + size, ordering: .relaxed)
            if exchanged { return (true, current + size) }
            current = original
        }
    }
}
