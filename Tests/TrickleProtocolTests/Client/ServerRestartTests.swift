import AsyncHTTPClient
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Runs a server on a reserved port (released just before the server binds it) until `body` returns.
private func withReservedServer<T: Sendable>(
    _ reserved: PortReservation,
    channel: String? = nil,
    _ body: (TrickleServer) async throws -> T
) async throws -> T {
    reserved.release()
    return try await withServer(port: reserved.port, channel: channel, body)
}

/// Runs a server on `port` until `body` returns (no channel pre-created unless asked).
private func withServer<T: Sendable>(
    port: Int,
    channel: String? = nil,
    _ body: (TrickleServer) async throws -> T
) async throws -> T {
    let server = TrickleServer(configuration: .init(host: "127.0.0.1", port: port), logger: quietLogger)
    if let channel { server.createChannel(named: channel) }
    return try await withTestServer(server) { _ in try await body(server) }
}



@Suite("Servers that vanish and come back", .timeLimit(.minutes(1)))
struct ServerRestartTests {
    private let fastRetries = Backoff(initial: .milliseconds(10), maximum: .milliseconds(50))

    @Test("a subscriber retries with back-off while the server is down and reads once it is back")
    func subscriberReconnects() async throws {
        // Held (refusing connections) until the server starts on it: no other test's socket can take it meanwhile.
        let reserved = try PortReservation()
        let port = reserved.port
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(connectTimeout: .milliseconds(200))) { client in
            let subscriber = TrickleSubscriber(
                url: try TrickleChannelURL("http://127.0.0.1:\(port)/ch"),
                httpClient: client,
                configuration: .init(start: .seq(0), retryBackoff: self.fastRetries),
                logger: quietLogger
            )
            let seen = Recorder<SeenEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await subscriber.run { seen.append(SeenEvent($0)) } }
                try await waitUntil("a few failed attempts") { subscriber.stats.retries >= 3 }
                try await withReservedServer(reserved, channel: "ch") { server in
                    // A separate client: the subscriber's pool may still be backing off from refused connections.
                    try await HTTPClient.withHTTPClient { other in
                        _ = try await other.send(.POST, "http://127.0.0.1:\(port)/ch/0", body: "back\n")
                    }
                    try await seen.wait("the data after the restart") { $0.hasEnded(0) }
                    _ = server.deleteChannel(named: "ch")
                    try await group.waitForAll()
                }
            }
            #expect(seen.values.text == "back\n")
        }
    }

    @Test("a subscriber in a long back-off asks again as soon as its server accepts connections, not at the end of the back-off")
    func subscriberAsksWhenServerReturns() async throws {
        // Held (refusing connections) until the server starts on it: no other test's socket can take it meanwhile.
        let reserved = try PortReservation()
        let port = reserved.port
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(connectTimeout: .milliseconds(200))) { client in
            let watch = ServerReturnWatch(origin: try #require(HTTPOrigin(url: "http://127.0.0.1:\(port)")), probeInterval: .milliseconds(100))
            // Every back-off 30–60 s: only the watch can bring the subscriber back within the test's minute.
            var configuration = TrickleSubscriber.Configuration(start: .seq(0), retryBackoff: Backoff(initial: .seconds(60), maximum: .seconds(60)))
            configuration.serverReturn = watch
            let subscriber = TrickleSubscriber(
                url: try TrickleChannelURL("http://127.0.0.1:\(port)/ch"),
                httpClient: client,
                configuration: configuration,
                logger: quietLogger
            )
            let seen = Recorder<SeenEvent>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await subscriber.run { seen.append(SeenEvent($0)) } }
                try await waitUntil("the first failed attempt") { subscriber.stats.retries >= 1 }
                try await withReservedServer(reserved, channel: "ch") { server in
                    try await HTTPClient.withHTTPClient { other in
                        _ = try await other.send(.POST, "http://127.0.0.1:\(port)/ch/0", body: "back\n")
                    }
                    try await seen.wait(timeout: .seconds(20), "the data, well before the back-off ends") { $0.hasEnded(0) }
                    _ = server.deleteChannel(named: "ch")
                    try await group.waitForAll()
                }
            }
            #expect(seen.values.text == "back\n")
            #expect(watch.returns >= 1)
            #expect(subscriber.stats.retries == 1, "asked once more, when the server was back")
        }
    }

    @Test("a server that accepts connections but drops every GET unanswered is not asked in a loop: the watch cuts one back-off short, not the next")
    func serverReturnIsNoTightLoop() async throws {
        let server = RawScriptedServer { _, _ in .init("", closesConnection: true) }
        try await server.run { base in
            try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(connectTimeout: .milliseconds(200))) { client in
                let watch = ServerReturnWatch(origin: try #require(HTTPOrigin(url: base)), probeInterval: .milliseconds(50))
                var configuration = TrickleSubscriber.Configuration(start: .seq(0), retryBackoff: Backoff(initial: .seconds(60), maximum: .seconds(60)))
                configuration.serverReturn = watch
                let subscriber = TrickleSubscriber(url: try TrickleChannelURL("\(base)/ch"), httpClient: client, configuration: configuration, logger: quietLogger)
                let reading = Task { try await subscriber.run { _ in } }
                try await waitUntil("the GET asked again when the watch connected") { server.requests.count >= 2 }
                // A window of twenty probe intervals: a subscriber woken on every connect would ask ~20 times more.
                try await Task.sleep(for: .seconds(1))
                #expect(server.requests.count == 2, "\(server.requests.count) GETs")
                #expect(watch.returns == 1)
                #expect(subscriber.stats.retries == 2)
                reading.cancel()
                _ = try? await reading.value
            }
        }
    }

    @Test("a publisher retries a POST that failed before sending any byte, and delivers once the server is back")
    func publisherRetries() async throws {
        // Held (refusing connections) until the server starts on it: no other test's socket can take it meanwhile.
        let reserved = try PortReservation()
        let port = reserved.port
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(connectTimeout: .milliseconds(200))) { client in
            let publisher = TricklePublisher(
                url: try TrickleChannelURL("http://127.0.0.1:\(port)/ch"),
                httpClient: client,
                configuration: .init(start: .seq(0), retryBackoff: self.fastRetries, maximumConsecutiveFailures: 1000),
                logger: quietLogger
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await publisher.run() }
                try await publisher.write(ByteBuffer(string: "queued while down\n"))
                await publisher.finishSegment()
                try await waitUntil("a few failed attempts") { publisher.stats.retries >= 3 }
                try await withReservedServer(reserved, channel: "ch") { server in
                    try await waitUntil("the segment to land") { publisher.stats.segments == 1 }
                    let body = try await HTTPClient.withHTTPClient { other in
                        try await other.send(.GET, "http://127.0.0.1:\(port)/ch/0").body
                    }
                    #expect(body == "queued while down\n")
                    try await publisher.close()
                    try await group.waitForAll()
                }
            }
            #expect(publisher.stats.failedSegments == 0)
        }
    }

    @Test("a publisher gives up after the configured consecutive failures with a clear error")
    func publisherGivesUp() async throws {
        // Held (refusing connections) until the server starts on it: no other test's socket can take it meanwhile.
        let reserved = try PortReservation()
        let port = reserved.port
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(connectTimeout: .milliseconds(200))) { client in
            let publisher = TricklePublisher(
                url: try TrickleChannelURL("http://127.0.0.1:\(port)/ch"),
                httpClient: client,
                configuration: .init(start: .seq(0), retryBackoff: self.fastRetries, maximumConsecutiveFailures: 3),
                logger: quietLogger
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await publisher.run() }
                try await publisher.write(ByteBuffer(string: "x\n"))
                let error = await #expect(throws: TrickleClientError.self) {
                    try await waitUntil("the publisher to give up") { (try? await publisher.write(ByteBuffer(string: "y\n"))) == nil }
                    try await publisher.write(ByteBuffer(string: "z\n"))
                }
                #expect(error?.code == .retriesExhausted)
                #expect(error?.message.contains("is the trickle server up?") == true)
                try await publisher.close()
                try await group.waitForAll()
            }
        }
    }

    @Test("graceful shutdown of the server releases waiting subscribers with Lp-Trickle-Closed")
    func serverGracefulShutdown() async throws {
        let server = TrickleServer(configuration: .init(host: "127.0.0.1", port: 0), logger: quietLogger)
        server.createChannel(named: "ch")
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            try await testGracefulShutdown { trigger in
                try await withThrowingTaskGroup(of: TrickleSubscriber.EndOfStream?.self) { group in
                    group.addTask { try await server.run(); return nil }
                    let port = try await server.waitUntilListening()
                    let subscriber = TrickleSubscriber(
                        url: try TrickleChannelURL("http://127.0.0.1:\(port)/ch"),
                        httpClient: client,
                        logger: quietLogger
                    )
                    group.addTask { try await subscriber.run { _ in } }
                    try await waitUntil("the subscriber to wait") { server.activeReaders(ofChannel: "ch") == 1 }
                    trigger.triggerGracefulShutdown()
                    var ends: [TrickleSubscriber.EndOfStream] = []
                    while let end = try await group.next() { if let end { ends.append(end) } }
                    #expect(ends == [.closed])
                }
            }
        }
    }

    /// Publishes through a scripted server that answers a segment's first `refusals[path]` POSTs with 503 (before
    /// reading the body: a server coming back) and accepts the rest; `body` drives the publisher, seeing how many
    /// POSTs each path got. Returns the POSTs in arrival order, with their place among all requests.
    private func publishRefusing(
        _ refusals: [String: Int],
        retryBackoff: Backoff,
        _ body: @Sendable (TricklePublisher, @escaping @Sendable (String) -> Int) async throws -> Void
    ) async throws -> [(offset: Int, element: ScriptedHTTPServer.Request)] {
        let attempts = RelayMutex<[String: Int]>([:])
        let server = ScriptedHTTPServer { request, _ in
            guard request.method == .post else { return .init(.ok) }
            let attempt = attempts.withLock { counts -> Int in
                counts[request.path, default: 0] += 1
                return counts[request.path]!
            }
            return attempt <= refusals[request.path, default: 0] ? .init(.serviceUnavailable, readsBody: false) : .init(.ok)
        }
        try await server.run { base in
            try await HTTPClient.withHTTPClient { client in
                let publisher = TricklePublisher(
                    url: try TrickleChannelURL("\(base)/ch"),
                    httpClient: client,
                    configuration: .init(start: .seq(0), retryBackoff: retryBackoff, maximumConsecutiveFailures: 100),
                    logger: quietLogger
                )
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await publisher.run() }
                    try await body(publisher) { path in attempts.withLock { $0[path] ?? 0 } }
                    try await publisher.close()
                    try await group.waitForAll()
                }
            }
        }
        return server.requests.enumerated().filter { $0.element.method == .post }.map { (offset: $0.offset, element: $0.element) }
    }

    @Test("after a failure the publisher sends segments in seq order again: the next seq's retry waits until the one before is on the server")
    func publisherRetriesInSeqOrder() async throws {
        // Seq 0 is refused twice (a server coming back), seq 1's preconnect once. Sent out of order, seq 1 would
        // move the server's nextWrite past 0 while 0 is still being retried, and a reader waiting on 0 would take
        // it for abandoned (the long-outage loss). In order, no retry of 1 arrives before 0 was accepted.
        let posts = try await self.publishRefusing(["/ch/0": 2, "/ch/1": 1], retryBackoff: self.fastRetries) { publisher, _ in
            try await publisher.write(ByteBuffer(string: "zero\n"))
            await publisher.finishSegment()
            try await publisher.write(ByteBuffer(string: "one\n"))
            await publisher.finishSegment()
            try await waitUntil("both segments to land") { publisher.stats.segments == 2 }
        }
        let zeroAccepted = try #require(posts.last { $0.element.path == "/ch/0" }).offset
        let retriesOfOne = posts.filter { $0.element.path == "/ch/1" }.dropFirst()
        #expect(!retriesOfOne.isEmpty)
        #expect(retriesOfOne.allSatisfy { $0.offset > zeroAccepted }, "\(posts.map { "\($0.offset) \($0.element.path)" })")
        #expect(posts.filter { $0.element.path == "/ch/0" }.last?.element.body == "zero\n")
        #expect(posts.filter { $0.element.path == "/ch/1" }.last?.element.body == "one\n")
    }

    @Test("a segment opened while earlier ones are being re-sent waits for them: its first POST reaches the server after theirs")
    func newSegmentWaitsBehindResends() async throws {
        // Seq 0 is refused three times and seq 1 once (a server coming back). Seq 2 is opened only after both
        // failed: sent at once, it would reach the restarted server first, and the server would answer a reader of
        // seq 0 or 1 that those are gone (470) — their events skipped.
        let backoff = Backoff(initial: .milliseconds(50), maximum: .milliseconds(200))
        let posts = try await self.publishRefusing(["/ch/0": 3, "/ch/1": 1], retryBackoff: backoff) { publisher, attempts in
            // Seq 0 open, seq 1 preconnected: both fail; only then does seq 1 take the writes and seq 2 open.
            try await publisher.write(ByteBuffer(string: "zero\n"))
            // Failed as the publisher sees it: every refused attempt so far counted as a retry.
            try await waitUntil("seq 0 and seq 1 to have failed") {
                attempts("/ch/1") >= 1 && publisher.stats.retries >= min(attempts("/ch/0"), 3) + 1
            }
            await publisher.finishSegment()
            try await publisher.write(ByteBuffer(string: "one\n"))
            await publisher.finishSegment()
            try await publisher.write(ByteBuffer(string: "two\n"))
            await publisher.finishSegment()
            try await waitUntil("three segments to land") { publisher.stats.segments == 3 }
        }
        let last = { (path: String) in posts.last { $0.element.path == path }?.offset ?? -1 }
        let firstOfTwo = try #require(posts.first { $0.element.path == "/ch/2" }).offset
        #expect(firstOfTwo > last("/ch/0") && firstOfTwo > last("/ch/1"), "\(posts.map { "\($0.offset) \($0.element.path)" })")
        #expect(posts.last { $0.element.path == "/ch/2" }?.element.body == "two\n")
    }
}
