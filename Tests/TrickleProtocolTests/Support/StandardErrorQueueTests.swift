import Logging
import Testing
import TrickleRelaySupport
import TrickleTestSupport

/// Standard error is a local reader like any other: one that stops must never block a thread that logs.
@Suite("StandardErrorQueue: a stopped stderr reader costs counted lines, never a blocked logger", .timeLimit(.minutes(1)))
struct StandardErrorQueueTests {
    @Test("5,000 log lines into a pipe nobody reads: every call returns; the reader comes back to whole lines and a count of the dropped ones")
    func stoppedReader() async throws {
        let pipe = try StalledPipe()
        let queue = StandardErrorQueue(StandardStreamWriter(descriptor: pipe.writeEnd), maximumQueuedBytes: 16 * 1024)
        var logger = Logger(label: "stderr-test") { label in
            StreamLogHandler(label: label, stream: queue.textStream, metadataProvider: nil)
        }
        logger.logLevel = .info
        let filler = String(repeating: "x", count: 60)
        // ~600 KB: the pipe's 64 KiB and the queue's 16 KiB fill, the rest is dropped (a synchronous write would
        // block here for good, and the suite's time limit would fail the test).
        for index in 0..<5_000 { logger.info("line \(index) \(filler)", metadata: ["n": "\(index)"]) }
        let dropped = queue.statistics.dropped
        #expect(dropped > 3_000, "\(queue.statistics)")

        // The reader comes back: one more line, after the notice of what was lost.
        try await Self.readerComesBack(to: pipe, of: queue, written: 5_000 - dropped) { logger.info("back") }

        let lines = pipe.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.last == "", "the output ends with a whole line")
        let logged = lines.filter { $0.contains(" info stderr-test: n=") }
        #expect(logged.count == 5_000 - dropped)
        #expect(logged.allSatisfy { $0.hasSuffix(filler) }, "whole lines only")
        // Each notice says how many went since the one before: together, every dropped line.
        let notices = lines.filter { $0.contains("standard error was not read") }
        #expect(notices.allSatisfy { $0.contains(" warning trickle-relay: stderr.dropped=") }, "\(notices.first ?? "none")")
        #expect(Self.droppedTotal(notices) == dropped, "\(notices)")
        #expect(lines.dropLast().last?.hasSuffix("back") == true)
    }

    @Test("a batch of lines written at once and dropped counts each of its lines")
    func batchCountsItsLines() async throws {
        let pipe = try StalledPipe()
        let queue = StandardErrorQueue(StandardStreamWriter(descriptor: pipe.writeEnd), maximumQueuedBytes: 1024)
        let batch = String(repeating: "TELEMETRY type=metric id=x\n", count: 100)  // 2.7 KB, more than pipe + queue take
        var outcomes: [QueuedStreamWriter.Outcome] = []
        for _ in 0..<64 { outcomes.append(queue.write(batch)) }
        let dropped = outcomes.count { $0 == .dropped }
        #expect(dropped > 0)
        try await Self.readerComesBack(to: pipe, of: queue, written: 64 - dropped) { queue.write("after\n") }
        let text = pipe.text
        let notices = text.split(separator: "\n").filter { $0.contains("standard error was not read") }
        #expect(Self.droppedTotal(notices) == dropped * 100, "\(notices)")
        #expect(text.hasSuffix("after\n"))
    }

    /// The reader of `pipe` reads until `written` records got through, `last` writes once more, and the rest is
    /// read to its end.
    static func readerComesBack(to pipe: StalledPipe, of queue: StandardErrorQueue, written: Int, then last: () -> Void) async throws {
        try await waitUntil("the queue to drain") {
            pipe.readAvailable()
            return queue.statistics.written == written
        }
        last()
        #expect(queue.drain(timeout: .seconds(10)))
        pipe.finish()
    }

    /// The lines the notices say were dropped, added up.
    static func droppedTotal(_ notices: [Substring]) -> Int {
        notices.reduce(0) { total, notice in
            let count = notice.split(separator: "stderr.dropped=").last?.prefix { $0.isNumber }
            return total + (count.flatMap { Int($0) } ?? 0)
        }
    }
}
