#if canImport(Glibc)
import Glibc
#endif
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Issue #22 item 3: a local reader that stops reading (stdout into a paused terminal or a full pipe) never blocks
/// the writer's caller; what does not fit is dropped and counted, and reading again clears the state.
@Suite("QueuedStreamWriter: a slow reader costs counted records, never a blocked caller", .timeLimit(.minutes(1)))
struct QueuedStreamWriterTests {
    @Test("into a pipe nobody reads: every write returns at once; records past the bound are dropped and counted")
    func stalledReader() async throws {
        var descriptors: [Int32] = [0, 0]
        try #require(pipe(&descriptors) == 0)
        defer { close(descriptors[0]) }
        let stream = StandardStreamWriter(descriptor: descriptors[1])
        let writer = QueuedStreamWriter(stream, maximumQueuedBytes: 64 * 1024)
        let record = [UInt8](repeating: UInt8(ascii: "x"), count: 1023) + [UInt8(ascii: "\n")]
        var outcomes: [QueuedStreamWriter.Outcome] = []
        // 1 MiB: sixteen times the queue, more than the pipe's kernel buffer (64 KiB) plus the queue can hold.
        // The second half once the pipe is full: the drain then blocks in a write, and the caller must not wait on it.
        for _ in 0..<512 { outcomes.append(writer.write(record)) }
        try await waitUntil("the pipe to be (nearly) full") { writer.statistics.written >= 60 }
        for _ in 0..<512 { outcomes.append(writer.write(record)) }
        #expect(outcomes.contains(.dropped))
        let dropped = outcomes.count { $0 == .dropped }
        #expect(writer.statistics.dropped == dropped)
        // At most the pipe buffer plus the queue got through; the rest was dropped, not waited for.
        #expect(dropped >= 1024 - (64 + 64 + 2), "\(dropped) dropped")

        // The reader comes back: everything queued is written, whole, and new records flow again.
        let readEnd = descriptors[0]
        _ = fcntl(readEnd, F_SETFL, fcntl(readEnd, F_GETFL) | O_NONBLOCK)
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let deadline = ContinuousClock.now + .seconds(30)
        while writer.statistics.written + writer.statistics.closedOut < 1024 - dropped {
            try #require(ContinuousClock.now < deadline, "the queue never drained: \(writer.statistics)")
            let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            if count > 0 { total += count } else { await Task.yield() }
        }
        #expect(writer.drain(timeout: .seconds(10)))
        close(descriptors[1])
        while true {
            let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            total += count
        }
        #expect(total == (1024 - dropped) * record.count, "whole records only")
        #expect(writer.statistics.written == 1024 - dropped)
    }

    @Test("a reader that went away (EPIPE): later records are refused as closed, never queued")
    func readerGone() throws {
        var descriptors: [Int32] = [0, 0]
        try #require(pipe(&descriptors) == 0)
        let previous = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previous) }
        close(descriptors[0])
        defer { close(descriptors[1]) }
        let writer = QueuedStreamWriter(StandardStreamWriter(descriptor: descriptors[1]))
        #expect(writer.write(Array("one\n".utf8)) == .queued)
        #expect(writer.drain(timeout: .seconds(10)))
        #expect(writer.isClosed)
        #expect(writer.write(Array("two\n".utf8)) == .closed)
        #expect(writer.statistics.closedOut == 2 && writer.statistics.written == 0)
    }
}
