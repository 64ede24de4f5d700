import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// What a test reader saw.
enum ReadItem: Sendable, Equatable {
    case line(String, seq: Int, number: Int)
    case diagnostic(String, seq: Int, number: Int?)
    case gap(Int, Int)

    init(_ item: JSONLReader.Item) {
        switch item {
        case .line(let line): self = .line(String(buffer: line.bytes), seq: line.seq, number: line.lineNumber)
        case .diagnostic(let d): self = .diagnostic("\(d.reason)", seq: d.seq, number: d.lineNumber)
        case .gap(let from, let to): self = .gap(from, to)
        }
    }

    var text: String? {
        if case .line(let text, _, _) = self { return text }
        return nil
    }
}

@Suite("JSONLWriter and JSONLReader over a real server", .timeLimit(.minutes(1)))
struct JSONLNetworkTests {
    private func writer(_ url: String, _ client: HTTPClient, window: Duration = .seconds(10), cap: Int = 5 * 1024 * 1024) throws -> JSONLWriter {
        JSONLWriter(
            url: try TrickleChannelURL(url),
            httpClient: client,
            configuration: .init(segmentWindow: window, maximumSegmentBytes: cap),
            logger: quietLogger
        )
    }

    private func reader(_ url: String, _ client: HTTPClient, cap: Int = 5 * 1024 * 1024) throws -> JSONLReader {
        JSONLReader(
            url: try TrickleChannelURL(url),
            httpClient: client,
            configuration: .init(maximumSegmentBytes: cap),
            logger: quietLogger
        )
    }

    @Test("10,000 JSONL messages across rotated segments arrive in order, none lost or duplicated")
    func tenThousand() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "events")
            let writer = try self.writer("\(base)/events", client, cap: 64 * 1024)
            let reader = try self.reader("\(base)/events", client, cap: 64 * 1024)
            let seen = Recorder<ReadItem>()
            let end = try await withThrowingTaskGroup(of: TrickleSubscriber.EndOfStream?.self) { group in
                group.addTask { try await writer.run(); return nil }
                group.addTask { try await reader.run { seen.append(ReadItem($0)) } }
                for batch in 0..<10 {
                    for n in (batch * 1000)..<((batch + 1) * 1000) {
                        try await writer.write(line: ByteBuffer(string: #"{"type":"metric","n":\#(n),"pad":"\#(String(repeating: "p", count: 40))"}"#))
                    }
                    // Stay within the ring of 5 behind the writer: wait for the reader to catch up per batch.
                    let expected = (batch + 1) * 1000
                    // (Counting all items keeps the predicate O(1); any diagnostic would fail the test below.)
                    try await seen.wait("batch \(batch)") { $0.count >= expected }
                }
                try await writer.close()
                var end: TrickleSubscriber.EndOfStream?
                while let result = try await group.next() { end = end ?? result }
                return end
            }
            #expect(end == .closed || end == .notFound)
            let lines = seen.values.compactMap(\.text)
            #expect(lines.count == 10_000)
            let numbers = lines.map { line in Int(line.split(separator: ",")[1].dropFirst(4))! }
            #expect(numbers == Array(0..<10_000))
            let seqs = Set(seen.values.compactMap { if case .line(_, let seq, _) = $0 { return seq } else { return nil } })
            #expect(seqs.count >= 10, "expected several size-rotated segments, got \(seqs.count)")
            #expect(!seen.values.contains { if case .diagnostic = $0 { return true } else { return false } })
            #expect(writer.publisher.stats.failedSegments == 0)
        }
    }

    @Test("the writer refuses a 6 MiB line, non-strict JSON, non-objects and newlines, writing nothing")
    func refusals() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            let writer = try self.writer("\(base)/events", client)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                let huge = ByteBuffer(string: #"{"blob":"\#(String(repeating: "a", count: 6 * 1024 * 1024))"}"#)
                await #expect(throws: JSONLWriterError(.lineTooLarge, "")) { try await writer.write(line: huge) }
                await #expect(throws: JSONLWriterError(.invalidJSON, "")) { try await writer.write(line: ByteBuffer(string: #"{"v":NaN}"#)) }
                await #expect(throws: JSONLWriterError(.invalidJSON, "")) { try await writer.write(line: ByteBuffer(string: #"{"v":Infinity}"#)) }
                await #expect(throws: JSONLWriterError(.invalidJSON, "")) { try await writer.write(Double.nan) }
                await #expect(throws: JSONLWriterError(.notAnObject, "")) { try await writer.write(line: ByteBuffer(string: "[1,2]")) }
                await #expect(throws: JSONLWriterError(.containsNewline, "")) { try await writer.write(line: ByteBuffer(string: "{\"a\":\n1}")) }
                #expect(await writer.publisher.hasOpenSegment == false)
                #expect(server.channelCount == 0)  // nothing was ever POSTed
                try await writer.write(["ok": 1])
                try await writer.close()
                try await group.waitForAll()
            }
        }
    }

    @Test("a line that would cross the cap goes to a new segment: no segment exceeds the cap")
    func rotationBySize() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "events")
            let cap = 1000
            let writer = try self.writer("\(base)/events", client, cap: cap)
            let line = #"{"k":"\#(String(repeating: "v", count: 290))"}"#  // 298 bytes + newline
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                for _ in 0..<10 { try await writer.write(line: ByteBuffer(string: line)) }
                try await writer.close()
                try await group.waitForAll()
            }
            // 3 lines (897 bytes) fit in 1000; a 4th would not: 4 segments of 3, 3, 3, 1 lines.
            #expect(writer.publisher.stats.segments == 4)
            #expect(writer.publisher.stats.bytes == 10 * 299)
        }
    }

    @Test("segments rotate on the time window: open for less than the window, kept; at the window, ended")
    func rotationByTime() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "events")
            let clock = ManualClock()
            var publisher = TricklePublisher.Configuration(mimeType: "application/jsonl")
            publisher.clock = RelayClock(clock)
            let writer = JSONLWriter(
                url: try TrickleChannelURL("\(base)/events"),
                httpClient: client,
                configuration: .init(segmentWindow: .seconds(10), publisher: publisher),
                logger: quietLogger
            )
            let reader = try self.reader("\(base)/events", client)
            let seen = Recorder<ReadItem>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                group.addTask { _ = try await reader.run { seen.append(ReadItem($0)) } }
                // The reader starts at the live edge: it must be waiting there before seq 0 is written.
                try await waitUntil("the reader to wait at the live edge") { server.activeReaders(ofChannel: "events") == 1 }
                try await writer.write(["n": 1])
                try await seen.wait("the first line") { $0.count(where: { $0.text != nil }) == 1 }
                // The writer checks the window on the clock: 9.5 s open is not yet 10.
                try await clock.waitForSleepers(1)
                try await clock.advance(by: .milliseconds(9_500), thenWaitForSleepers: 1)
                #expect(await writer.publisher.hasOpenSegment == true)
                try await clock.advance(by: .milliseconds(500), thenWaitForSleepers: 1)
                #expect(await writer.publisher.hasOpenSegment == false)
                try await writer.write(["n": 2])
                try await seen.wait("both lines") { $0.count(where: { $0.text != nil }) == 2 }
                try await writer.close()
                try await group.waitForAll()
            }
            #expect(seen.values == [.line(#"{"n":1}"#, seq: 0, number: 1), .line(#"{"n":2}"#, seq: 1, number: 1)])
        }
    }

    @Test("malformed, non-object and truncated lines are reported with seq and line; the lines after arrive")
    func diagnosticsOverTheWire() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/events/0", body: "{\"a\":1}\n{bad json}\n[1,2]\n{\"b\":2}\n{\"cut\":tr")
            _ = try await client.send(.POST, "\(base)/events/1", body: "{\"c\":3}\n")
            let reader = JSONLReader(
                url: try TrickleChannelURL("\(base)/events"),
                httpClient: client,
                configuration: .init(subscriber: .init(start: .seq(0))),
                logger: quietLogger
            )
            let seen = Recorder<ReadItem>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await reader.run { seen.append(ReadItem($0)) } }
                try await seen.wait("segment 1") { $0.contains(.line(#"{"c":3}"#, seq: 1, number: 1)) }
                _ = server.deleteChannel(named: "events")
                try await group.waitForAll()
            }
            #expect(
                seen.values == [
                    .line(#"{"a":1}"#, seq: 0, number: 1),
                    .diagnostic("malformed_json", seq: 0, number: 2),
                    .diagnostic("not_an_object", seq: 0, number: 3),
                    .line(#"{"b":2}"#, seq: 0, number: 4),
                    .diagnostic("truncated_line", seq: 0, number: 5),
                    .line(#"{"c":3}"#, seq: 1, number: 1),
                ]
            )
        }
    }

    @Test("a segment over the reader's cap is reported and the next segment still arrives")
    func segmentOverCap() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            let big = String(repeating: #"{"k":"\#(String(repeating: "v", count: 90))"}"# + "\n", count: 100)  // ~10 KB
            _ = try await client.send(.POST, "\(base)/events/0", body: big)
            _ = try await client.send(.POST, "\(base)/events/1", body: "{\"next\":true}\n")
            let reader = JSONLReader(
                url: try TrickleChannelURL("\(base)/events"),
                httpClient: client,
                configuration: .init(maximumSegmentBytes: 4096, subscriber: .init(start: .seq(0))),
                logger: quietLogger
            )
            let seen = Recorder<ReadItem>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await reader.run { seen.append(ReadItem($0)) } }
                try await seen.wait("segment 1") { $0.contains(.line(#"{"next":true}"#, seq: 1, number: 1)) }
                _ = server.deleteChannel(named: "events")
                try await group.waitForAll()
            }
            let diagnostics = seen.values.filter { if case .diagnostic = $0 { return true } else { return false } }
            #expect(diagnostics == [.diagnostic("segment_too_large", seq: 0, number: nil)])
            // The whole lines within the first 4096 bytes were delivered (each is 99 bytes): 41 of them.
            #expect(seen.values.count(where: { if case .line(_, 0, _) = $0 { return true } else { return false } }) == 4096 / 99)
        }
    }

    @Test("graceful shutdown closes the writer: the open segment is sent and readers see end of stream")
    func writerGracefulShutdown() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "events")
            let writer = try self.writer("\(base)/events", client)
            let reader = try self.reader("\(base)/events", client)
            let seen = Recorder<ReadItem>()
            let end = try await withThrowingTaskGroup(of: TrickleSubscriber.EndOfStream?.self) { group in
                group.addTask { try await reader.run { seen.append(ReadItem($0)) } }
                try await testGracefulShutdown { trigger in
                    try await withThrowingTaskGroup(of: Void.self) { inner in
                        inner.addTask { try await writer.run() }
                        try await writer.write(["last": true])
                        trigger.triggerGracefulShutdown()
                        try await inner.waitForAll()
                    }
                }
                let end = try await group.next() ?? nil
                group.cancelAll()
                return end
            }
            #expect(end == .closed || end == .notFound)
            #expect(seen.values.compactMap(\.text) == [#"{"last":true}"#])
        }
    }
}
