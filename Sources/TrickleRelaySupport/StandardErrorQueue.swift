#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Standard error for log lines and messages to people, written from a thread of its own through a bounded
/// queue (``QueuedStreamWriter``), so a reader that stops (`2>&1 | less` left on its first page, a paused
/// terminal, a log collector that stalls) never blocks the thread that logs: an event loop, or a task of the
/// Swift concurrency pool, whose stall would stop the whole process.
///
/// Lines that would pass the bound are dropped and counted; once the queue takes lines again, a line says how
/// many were dropped (it is the first thing the reader sees when it comes back). A reader that went away
/// (`EPIPE`) closes standard error for good: later lines are refused, never a trap. Call ``drain(timeout:)``
/// before the process exits, so its last lines are not lost.
public final class StandardErrorQueue: Sendable {
    /// File descriptor 2, with a 1 MiB queue: one per process.
    public static let shared = StandardErrorQueue(StandardStreamWriter.standardError)

    private let writer: QueuedStreamWriter
    /// Lines dropped since the last "lines dropped" notice was queued (a record may hold several: the log sink
    /// writes a batch's lines at once).
    private let droppedSinceNotice = Atomic<Int>(0)

    /// - Parameters:
    ///   - stream: Where the lines go.
    ///   - maximumQueuedBytes: The most bytes waiting for the reader; default 1 MiB (hours of logs at `info`).
    public init(_ stream: StandardStreamWriter, maximumQueuedBytes: Int = 1 << 20) {
        // No logger: the writer's own "reader is behind" state would be logged into the queue it describes.
        self.writer = QueuedStreamWriter(stream, maximumQueuedBytes: maximumQueuedBytes, logger: nil)
    }

    /// The queue's counters: lines written, dropped (queue full) and refused (the reader went away).
    public var statistics: QueuedStreamWriter.Stats { self.writer.statistics }

    /// Queues `text` (whole lines, newlines included), written whole and in order, without blocking.
    @discardableResult
    public func write(_ text: String) -> QueuedStreamWriter.Outcome {
        // The notice of what was dropped goes with the next text, in the same record: both fit, or neither.
        let dropped = self.droppedSinceNotice.exchange(0, ordering: .relaxed)
        let record = dropped > 0 ? Array((Self.droppedNotice(dropped) + text).utf8) : Array(text.utf8)
        let outcome = self.writer.write(record)
        if outcome == .dropped {
            self.droppedSinceNotice.add(dropped + max(text.utf8.count(where: { $0 == 0x0A }), 1), ordering: .relaxed)
        }
        return outcome
    }

    /// Waits until every line queued so far was written (or standard error closed), for at most `timeout`.
    /// - Returns: Whether the queue was drained in time (a stopped reader does not hold the exit).
    @discardableResult
    public func drain(timeout: Duration) -> Bool {
        self.writer.drain(timeout: timeout)
    }

    /// A `TextOutputStream` for swift-log's `StreamLogHandler`: each `write` is one whole log line.
    public var textStream: TextStream { TextStream(queue: self) }

    /// Lines written through it go to the queue, each whole.
    public struct TextStream: TextOutputStream, Sendable {
        let queue: StandardErrorQueue

        public mutating func write(_ string: String) {
            self.queue.write(string)
        }
    }

    /// The line that reports dropped lines, in the shape of the log's own lines.
    static func droppedNotice(_ count: Int) -> String {
        "\(Self.timestamp()) warning trickle-relay: stderr.dropped=\(count) [TrickleRelaySupport] standard error was not read: \(count) lines dropped\n"
    }

    /// Local time as swift-log's stream handler writes it (`2026-12-07T16:20:56+0000`).
    private static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        guard localtime_r(&now, &parts) != nil else { return "-" }
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
