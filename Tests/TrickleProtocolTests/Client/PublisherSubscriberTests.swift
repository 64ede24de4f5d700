import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// What a test subscriber saw, flattened for assertions.
enum SeenEvent: Sendable, Equatable {
    case started(Int)
    case bytes(String, Int)
    case ended(Int, TrickleSegmentEnd)
    case gap(Int, Int)

    init(_ event: TrickleSubscriberEvent) {
        switch event {
        case .segmentStarted(let seq): self = .started(seq)
        case .bytes(let buffer, let seq): self = .bytes(String(buffer: buffer), seq)
        case .segmentEnded(let seq, let end): self = .ended(seq, end)
        case .gap(let from, let to): self = .gap(from, to)
        }
    }
}

extension [SeenEvent] {
    /// All bytes received, concatenated.
    var text: String {
        self.map { if case .bytes(let text, _) = $0 { return text } else { return "" } }.joined()
    }

    func bytes(ofSeq seq: Int) -> String {
        self.map { if case .bytes(let text, let s) = $0, s == seq { return text } else { return "" } }.joined()
    }

    func hasEnded(_ seq: Int) -> Bool {
        self.contains { if case .ended(let s, _) = $0 { return s == seq } else { return false } }
    }
}

@Suite("TricklePublisher and TrickleSubscriber", .timeLimit(.minutes(1)))
struct PublisherSubscriberTests {
    private func publisher(_ url: String, _ client: HTTPClient, start: TricklePublisher.StartPosition = .next) throws -> TricklePublisher {
        TricklePublisher(
            url: try TrickleChannelURL(url),
            httpClient: client,
            configuration: .init(start: start, retryBackoff: Backoff(initial: .milliseconds(10), maximum: .milliseconds(50))),
            logger: quietLogger
        )
    }

    private func subscriber(
        _ url: String,
        _ client: HTTPClient,
        _ configuration: TrickleSubscriber.Configuration = .init()
    ) throws -> TrickleSubscriber {
        TrickleSubscriber(url: try TrickleChannelURL(url), httpClient: client, configuration: configuration, logger: quietLogger)
    }

    @Test("a subscriber that joins mid-segment gets the earlier bytes from byte 0, then the live ones")
    func joinMidSegment() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            let publisher = try self.publisher("\(base)/ch", client, start: .seq(0))
            let seen = Recorder<SeenEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await publisher.run() }
                try await publisher.write(ByteBuffer(string: "early-1\nearly-2\n"))
                try await waitUntil("the first bytes to reach the server") { server.nextWrite(ofChannel: "ch") == 1 }
                let subscriber = try self.subscriber("\(base)/ch", client, .init(start: .seq(0)))
                group.addTask { _ = try await subscriber.run { seen.append(SeenEvent($0)) } }
                try await seen.wait("the earlier bytes") { $0.text == "early-1\nearly-2\n" }
                #expect(!seen.values.hasEnded(0))
                try await publisher.write(ByteBuffer(string: "live-3\n"))
                try await seen.wait("the live bytes") { $0.text.hasSuffix("live-3\n") }
                // Still before the publisher finished the segment.
                #expect(!seen.values.hasEnded(0))
                await publisher.finishSegment()
                try await seen.wait("the segment end") { $0.hasEnded(0) }
                try await publisher.close()
                try await group.next()
                try await group.next()
            }
            #expect(seen.values.first == .started(0))
            #expect(seen.values.bytes(ofSeq: 0) == "early-1\nearly-2\nlive-3\n")
        }
    }

    @Test("publisher seqs are contiguous, start at /next with Lp-Trickle-Reset, and close deletes the channel")
    func contiguousAndClose() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch/0", body: "old\n")
            _ = try await client.send(.POST, "\(base)/ch/1", body: "old\n")
            let publisher = try self.publisher("\(base)/ch", client)
            let subscriber = try self.subscriber("\(base)/ch", client, .init(start: .seq(2)))
            let seen = Recorder<SeenEvent>()
            let end = try await withThrowingTaskGroup(of: TrickleSubscriber.EndOfStream?.self) { group in
                group.addTask { try await publisher.run(); return nil }
                group.addTask { try await subscriber.run { seen.append(SeenEvent($0)) } }
                for index in 0..<4 {
                    try await publisher.write(ByteBuffer(string: "segment \(index)\n"))
                    await publisher.finishSegment()
                }
                try await seen.wait("four segments") { $0.hasEnded(5) }
                try await publisher.close()
                var end: TrickleSubscriber.EndOfStream?
                while let result = try await group.next() { end = end ?? result }
                return end
            }
            // Closed if the subscriber was waiting when the channel went, 404 if it asked just after.
            #expect(end == .closed || end == .notFound)
            #expect(server.channelCount == 0)
            #expect(seen.values.bytes(ofSeq: 2) == "segment 0\n")
            #expect(seen.values.bytes(ofSeq: 5) == "segment 3\n")
            let stats = publisher.stats
            #expect(stats.segments == 4)
            #expect(stats.resets == 1)
            #expect(stats.failedSegments == 0)
        }
    }

    @Test("a subscriber started before its channel exists: 404 ends it at once, unless it waits for the channel")
    func waitForChannel() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            let early = try self.subscriber("\(base)/not-yet", client, .init(start: .seq(0)))
            #expect(try await early.run { _ in } == .notFound)

            let waiting = try self.subscriber("\(base)/not-yet", client, .init(start: .seq(0), channelWaitTimeout: .seconds(20)))
            let seen = Recorder<SeenEvent>()
            try await withThrowingTaskGroup(of: TrickleSubscriber.EndOfStream.self) { group in
                group.addTask { try await waiting.run { seen.append(SeenEvent($0)) } }
                try await waitUntil("a few 404s") { waiting.stats.attempts >= 3 }
                let publisher = try self.publisher("\(base)/not-yet", client, start: .seq(0))
                group.addTask {
                    try await publisher.run()
                    return .closed
                }
                try await publisher.write(ByteBuffer(string: "late but here\n"))
                try await seen.wait("the bytes") { $0.text == "late but here\n" }
                try await publisher.close()
                var ends: [TrickleSubscriber.EndOfStream] = []
                for try await end in group { ends.append(end) }
                #expect(ends.contains(.closed) || ends.contains(.notFound))
            }
        }
    }

    @Test("waiting for a channel asks less and less often (idle is nearly free); told the channel is expected, it asks at once")
    func waitingBacksOff() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            var configuration = TrickleSubscriber.Configuration(start: .seq(0), aheadRetryDelay: .milliseconds(5), channelWaitTimeout: .seconds(60))
            configuration.channelWaitMaximumDelay = .seconds(30)
            let waiting = try self.subscriber("\(base)/expected-later", client, configuration)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await waiting.run { _ in } }
                // Ten asks take seconds (5 ms doubling), where a fixed 5 ms would have made hundreds; the delay
                // before the eleventh is at least 2.5 s.
                try await waitUntil(timeout: .seconds(20), every: .milliseconds(1), "ten asks") { waiting.stats.attempts >= 10 }
                let asked = waiting.stats.attempts
                #expect(asked == 10)
                waiting.expectChannel()
                try await waitUntil(timeout: .seconds(1), every: .milliseconds(1), "an ask at once") { waiting.stats.attempts > asked }
                // And the short delays again (5, 10, 20 ms…): a channel that appears now is seen soon.
                try await waitUntil(timeout: .seconds(1), every: .milliseconds(1), "short delays again") { waiting.stats.attempts >= asked + 4 }
                group.cancelAll()
            }
        }
    }

    @Test("two subscribers each get everything")
    func twoSubscribers() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "ch")
            let publisher = try self.publisher("\(base)/ch", client)
            let first = Recorder<SeenEvent>()
            let second = Recorder<SeenEvent>()
            let expected = (0..<2000).map { "{\"n\":\($0)}\n" }.joined()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await publisher.run() }
                for recorder in [first, second] {
                    let subscriber = try self.subscriber("\(base)/ch", client)
                    group.addTask { _ = try await subscriber.run { recorder.append(SeenEvent($0)) } }
                }
                try await waitUntil("both subscribers to wait") { server.activeReaders(ofChannel: "ch") == 2 }
                for n in 0..<2000 {
                    try await publisher.write(ByteBuffer(string: "{\"n\":\(n)}\n"))
                    if n % 500 == 499 { await publisher.finishSegment() }
                }
                try await publisher.close()
                try await group.waitForAll()
            }
            #expect(first.values.text == expected)
            #expect(second.values.text == expected)
        }
    }

    @Test("behind the ring: 470 with a larger Latest makes the subscriber read what the ring still holds and report the rest as the gap")
    func jumpWhenBehind() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            for seq in 0..<8 { _ = try await client.send(.POST, "\(base)/ch/\(seq)", body: "s\(seq)\n") }
            let subscriber = try self.subscriber("\(base)/ch", client, .init(start: .seq(0)))
            let seen = Recorder<SeenEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await subscriber.run { seen.append(SeenEvent($0)) } }
                try await seen.wait("the gap") { $0.contains(.gap(0, 3)) }
                try await waitUntil("the subscriber to wait on seq 8") { server.activeReaders(ofChannel: "ch") == 1 }
                _ = try await client.send(.POST, "\(base)/ch/8", body: "s8\n")
                try await seen.wait("segment 8") { $0.hasEnded(8) }
                _ = server.deleteChannel(named: "ch")
                try await group.waitForAll()
            }
            // Segments 3…7 were still in the ring of 5: read, not lost.
            #expect(seen.values.text == "s3\ns4\ns5\ns6\ns7\ns8\n")
            #expect(subscriber.stats.gaps == 3)
        }
    }

    @Test("retainedSegments 0: behind the ring, the subscriber jumps to Latest as the SDK does")
    func jumpToLatestLikeTheSDK() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            for seq in 0..<8 { _ = try await client.send(.POST, "\(base)/ch/\(seq)", body: "s\(seq)\n") }
            let subscriber = try self.subscriber("\(base)/ch", client, .init(start: .seq(0), retainedSegments: 0))
            let seen = Recorder<SeenEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await subscriber.run { seen.append(SeenEvent($0)) } }
                try await seen.wait("the gap") { $0.contains(.gap(0, 8)) }
                try await waitUntil("the subscriber to wait on seq 8") { server.activeReaders(ofChannel: "ch") == 1 }
                _ = server.deleteChannel(named: "ch")
                try await group.waitForAll()
            }
            #expect(seen.values.text == "")
            #expect(subscriber.stats.gaps == 8)
        }
    }

    @Test("ahead of nextWrite: 470 with a smaller Latest makes the subscriber wait, not rewind")
    func waitWhenAhead() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "ch")
            let subscriber = try self.subscriber(
                "\(base)/ch",
                client,
                .init(start: .seq(3), aheadRetryDelay: .milliseconds(10), maximumAheadRetries: 100_000)
            )
            let seen = Recorder<SeenEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await subscriber.run { seen.append(SeenEvent($0)) } }
                try await waitUntil("a 470 answer") { subscriber.stats.attempts >= 2 }
                for seq in 0..<4 { _ = try await client.send(.POST, "\(base)/ch/\(seq)", body: "s\(seq)\n") }
                try await seen.wait("segment 3") { $0.hasEnded(3) }
                _ = server.deleteChannel(named: "ch")
                try await group.waitForAll()
            }
            #expect(seen.values.first == .started(3))
            #expect(seen.values.text == "s3\n")
            #expect(subscriber.stats.gaps == 0)
        }
    }

    @Test("channel DELETE ends a waiting subscriber and a waiting publisher at once")
    func deleteEndsEveryone() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "ch")
            let publisher = try self.publisher("\(base)/ch", client, start: .seq(0))
            let subscriber = try self.subscriber("\(base)/ch", client, .init(start: .seq(1)))
            try await withThrowingTaskGroup(of: TrickleSubscriber.EndOfStream?.self) { group in
                group.addTask { try await publisher.run(); return nil }
                try await publisher.write(ByteBuffer(string: "x\n"))
                await publisher.finishSegment()  // segment 1 is now preconnected and idle
                group.addTask { try await subscriber.run { _ in } }
                try await waitUntil("segment 0 done, the subscriber and the preconnected POST waiting") {
                    publisher.stats.segments == 1 && server.activeReaders(ofChannel: "ch") == 1
                        && server.activeWriters(ofChannel: "ch") == 1
                }
                let started = ContinuousClock.now
                #expect(server.deleteChannel(named: "ch"))
                #expect(try await group.next() == .closed)
                // The publisher's preconnected POST was released with Lp-Trickle-Closed: writing now fails.
                await #expect(throws: TrickleClientError(.channelClosed, "")) {
                    try await waitUntil("the publisher to learn of the close") {
                        (try? await publisher.write(ByteBuffer(string: "y\n"))) == nil
                    }
                    try await publisher.write(ByteBuffer(string: "y\n"))
                }
                #expect(ContinuousClock.now - started < .seconds(5))
                try await publisher.close()
                try await group.waitForAll()
            }
        }
    }

    @Test("a segment whose publisher died is abandoned after the stall timeout (not before) once the publisher moved on")
    func stalledSegment() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "ch")  // the subscriber may ask before the first POST would create it
            let dead = try self.publisher("\(base)/ch", client, start: .seq(0))
            let seen = Recorder<SeenEvent>()
            let clock = ManualClock()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await dead.run() }
                try await dead.write(ByteBuffer(string: "partial\n"))  // segment 0 never ends
                var configuration = TrickleSubscriber.Configuration(start: .seq(0), stallTimeout: .seconds(30))
                configuration.clock = RelayClock(clock)
                let subscriber = try self.subscriber("\(base)/ch", client, configuration)
                group.addTask { _ = try await subscriber.run { seen.append(SeenEvent($0)) } }
                try await seen.wait("the partial segment") { $0.text == "partial\n" }
                // A restarted publisher that does not send Lp-Trickle-Reset (like http-trickle's clients).
                _ = try await client.send(.POST, "\(base)/ch/2", body: "after\n")
                // The watchdog sleeps on the clock: 29 s of silence is not a stall yet.
                try await clock.waitForSleepers(1)
                clock.advance(by: .seconds(29))
                try await clock.waitForSleepers(1)
                #expect(subscriber.stats.stalls == 0)
                // Then, one stall timeout at a time, segments 0 and 1 are abandoned and segment 2 is read.
                for _ in 0..<4 where !seen.values.text.hasSuffix("after\n") {
                    clock.advance(by: .seconds(30))
                    try await clock.waitForSleepers(1)
                }
                try await seen.wait("the next segment after the stall") { $0.text.hasSuffix("after\n") }
                #expect(seen.values.contains(.ended(0, .stalled(bytes: 8))))
                // Segment 0 (mid-body) and segment 1 (the dead publisher's idle preconnect) were both abandoned.
                #expect(subscriber.stats.stalls == 2)
                _ = server.deleteChannel(named: "ch")
                group.cancelAll()
            }
        }
    }

    @Test("with the default clock (event-loop timers, no watchdog task) a dead publisher's segments are abandoned one stall timeout each, never sooner")
    func stalledSegmentOnEventLoopTimers() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "ch")
            let dead = try self.publisher("\(base)/ch", client, start: .seq(0))
            let seen = Recorder<SeenEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await dead.run() }
                try await dead.write(ByteBuffer(string: "partial\n"))  // segment 0 never ends
                let timeout = Duration.milliseconds(300)
                let logs = CapturedLogs()
                let subscriber = TrickleSubscriber(
                    url: try TrickleChannelURL("\(base)/ch"),
                    httpClient: client,
                    configuration: .init(start: .seq(0), stallTimeout: timeout),
                    logger: logs.logger()
                )
                group.addTask { _ = try await subscriber.run { seen.append(SeenEvent($0)) } }
                try await seen.wait("the partial segment") { $0.text == "partial\n" }
                let quietSince = ContinuousClock.now
                _ = try await client.send(.POST, "\(base)/ch/2", body: "after\n")
                try await seen.wait("the next segment after the stalls") { $0.text.hasSuffix("after\n") }
                // Segments 0 and 1 each waited out a whole stall timeout of silence first.
                #expect(ContinuousClock.now - quietSince >= timeout * 2)
                #expect(seen.values.contains(.ended(0, .stalled(bytes: 8))))
                #expect(subscriber.stats.stalls == 2)
                // Abandoning closes the connection under the GET: that is the watchdog's doing, not a connection
                // problem to diagnose, and not a failed attempt.
                #expect(!logs.lines.contains { $0.contains("trickle GET failed") }, "\(logs.lines)")
                #expect(subscriber.stats.retries == 0)
                _ = server.deleteChannel(named: "ch")
                group.cancelAll()
            }
        }
    }

    @Test("with the default clock a quiet segment at the live edge is checked, never abandoned: its next line arrives in it after several stall timeouts of silence")
    func quietSegmentOnEventLoopTimers() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "ch")
            let publisher = try self.publisher("\(base)/ch", client, start: .seq(0))
            let seen = Recorder<SeenEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await publisher.run() }
                try await publisher.write(ByteBuffer(string: "first\n"))
                let timeout = Duration.milliseconds(150)
                let subscriber = try self.subscriber("\(base)/ch", client, .init(start: .seq(0), stallTimeout: timeout))
                group.addTask { _ = try await subscriber.run { seen.append(SeenEvent($0)) } }
                try await seen.wait("the first line") { $0.text == "first\n" }
                // Silence for four stall timeouts: the watchdog checks (the publisher is still on segment 0) and
                // keeps waiting. (Time passing is what is tested here, not a way to wait for something.)
                try await Task.sleep(for: timeout * 4)
                try await publisher.write(ByteBuffer(string: "second\n"))
                try await seen.wait("the second line in the same segment") { $0.bytes(ofSeq: 0) == "first\nsecond\n" }
                #expect(subscriber.stats.stalls == 0)
                #expect(subscriber.stats.retries == 0)
                #expect(!seen.values.contains { if case .ended = $0 { return true } else { return false } })
                _ = server.deleteChannel(named: "ch")
                group.cancelAll()
            }
        }
    }

    @Test("a subscriber cuts a segment over its limit and reads the next one")
    func subscriberSegmentLimit() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch/0", body: String(repeating: "x", count: 10_000))
            _ = try await client.send(.POST, "\(base)/ch/1", body: "small\n")
            let subscriber = try self.subscriber("\(base)/ch", client, .init(start: .seq(0), maximumSegmentBytes: 4096))
            let seen = Recorder<SeenEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await subscriber.run { seen.append(SeenEvent($0)) } }
                try await seen.wait("segment 1") { $0.hasEnded(1) }
                _ = server.deleteChannel(named: "ch")
                try await group.waitForAll()
            }
            #expect(seen.values.bytes(ofSeq: 0).utf8.count == 4096)
            #expect(seen.values.contains(.ended(0, .overLimit(bytes: 10_000))) || seen.values.contains { event in
                if case .ended(0, .overLimit) = event { return true } else { return false }
            })
            #expect(seen.values.bytes(ofSeq: 1) == "small\n")
        }
    }

    @Test("404 ends the subscription; an unreachable server exhausts bounded retries with a clear error")
    func notFoundAndUnreachable() async throws {
        try await withTrickleServer { (_, base, client) async throws in
            let missing = try self.subscriber("\(base)/nope", client)
            #expect(try await missing.run { _ in } == .notFound)
        }
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(connectTimeout: .milliseconds(200))) { client in
            // Port 1 on loopback: nothing listens there.
            let subscriber = try self.subscriber(
                "http://127.0.0.1:1/ch",
                client,
                .init(retryBackoff: Backoff(initial: .milliseconds(1), maximum: .milliseconds(5)), maximumConsecutiveFailures: 3)
            )
            await #expect(throws: TrickleClientError(.retriesExhausted, "")) { _ = try await subscriber.run { _ in } }
            #expect(subscriber.stats.attempts == 3)
        }
    }

    @Test("channel URLs must be http(s), name a channel and hold no space or control character; query tokens never reach descriptions")
    func channelURLs() throws {
        #expect(throws: TrickleClientError(.invalidURL, "")) { try TrickleChannelURL("ftp://x/ch") }
        #expect(throws: TrickleClientError(.invalidURL, "")) { try TrickleChannelURL("http://host") }
        #expect(throws: TrickleClientError(.invalidURL, "")) { try TrickleChannelURL("http:///ch") }
        for split in ["http://host/a b", "http://host/ch\r\nX-Injected: 1", "http://host/ch?jwt=a\tb", "http://host/c\u{0}h"] {
            let error = #expect(throws: TrickleClientError.self) { try TrickleChannelURL(split) }
            #expect(error?.description.contains("percent-encode") == true, "\(split.debugDescription)")
        }
        let url = try TrickleChannelURL("https://orch:8935/ai/trickle/job-events/?jwt=secret.token.here")
        #expect(url.channelName == "job-events")
        #expect(url.url(seq: 3) == "https://orch:8935/ai/trickle/job-events/3?jwt=secret.token.here")
        #expect(!url.description.contains("secret"))
        let error = #expect(throws: TrickleClientError.self) { try TrickleChannelURL("ws://h/c?jwt=secret") }
        #expect(error?.description.contains("secret") == false)
        #expect(error?.description.contains("http(s)://") == true)
    }
}
