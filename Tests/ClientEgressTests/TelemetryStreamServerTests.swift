import AsyncHTTPClient
import ClientEgress
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycleTestKit
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

private func envelope(_ n: Int) -> TelemetryRecord {
    TelemetryRecord(envelope: ByteBuffer(string: #"{"id":"e\#(n)","type":"stream_trace","data":{"type":"metric","v":1.0e3,"s":"\u00e9"}}"#), seq: 0, lineNumber: n)
}

private struct ServerEvent: Equatable {
    var id: Int
    var data: String
}

/// Runs a stream server on an ephemeral loopback port while `body` runs.
private func withStreamServer(
    token: String? = "sse-secret",
    capacity: Int = 10_000,
    keepAlive: Duration = .seconds(15),
    maximumReaders: Int = 256,
    readerWriteTimeout: Duration = .seconds(10),
    clock: RelayClock = .continuous,
    logger: Logger = quietLogger,
    _ body: @Sendable (TelemetryStream, String, HTTPClient) async throws -> Void
) async throws {
    try await withStreamServerAndServer(
        token: token, capacity: capacity, keepAlive: keepAlive, maximumReaders: maximumReaders, readerWriteTimeout: readerWriteTimeout,
        clock: clock, logger: logger
    ) { stream, _, base, client in try await body(stream, base, client) }
}

/// The same, handing over the server too (for its reader counters).
private func withStreamServerAndServer(
    token: String? = "sse-secret",
    capacity: Int = 10_000,
    keepAlive: Duration = .seconds(15),
    maximumReaders: Int = 256,
    readerWriteTimeout: Duration = .seconds(10),
    clock: RelayClock = .continuous,
    logger: Logger = quietLogger,
    _ body: @Sendable (TelemetryStream, TelemetryStreamServer, String, HTTPClient) async throws -> Void
) async throws {
    let stream = TelemetryStream(capacity: capacity)
    let server = TelemetryStreamServer(
        configuration: .init(
            host: "127.0.0.1", port: 0, token: token.map(BearerToken.init), keepAliveInterval: keepAlive,
            maximumReaders: maximumReaders, readerWriteTimeout: readerWriteTimeout, clock: clock
        ),
        stream: stream,
        logger: logger,
        metrics: { "trickle_relay_client_stream_events_total \(stream.latestID)\n" }
    )
    try await testGracefulShutdown { trigger in
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try await server.waitUntilListening()
            try await HTTPClient.withHTTPClient { client in
                try await body(stream, server, "http://127.0.0.1:\(port)", client)
            }
            trigger.triggerGracefulShutdown()
            try await group.waitForAll()
        }
    }
}

/// Opens the SSE stream and reads until `until` holds for what arrived (events and raw text), or 10 s pass.
private func readStream(
    _ client: HTTPClient,
    _ url: String,
    headers: [(String, String)] = [],
    until: @escaping @Sendable ([ServerEvent], String) -> Bool,
    whileOpen: @escaping @Sendable () async throws -> Void = {}
) async throws -> (status: UInt, events: [ServerEvent], text: String) {
    var request = HTTPClientRequest(url: url)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    let response = try await client.execute(request, timeout: .seconds(10))
    guard response.status == .ok else { return (response.status.code, [], "") }
    return try await withThrowingTaskGroup(of: ([ServerEvent], String)?.self) { group in
        group.addTask {
            var text = ""
            for try await chunk in response.body {
                text += String(buffer: chunk)
                let events = parse(text)
                if until(events, text) { return (events, text) }
            }
            return (parse(text), text)
        }
        group.addTask {
            try await whileOpen()
            try await Task.sleep(for: .seconds(10))
            return nil
        }
        defer { group.cancelAll() }
        guard let result = try await group.next() ?? nil else { throw TimedOut() }
        return (200, result.0, result.1)
    }
}

private struct TimedOut: Error {}

/// Parses SSE text into events (id + data), ignoring comments.
private func parse(_ text: String) -> [ServerEvent] {
    var events: [ServerEvent] = []
    for block in text.components(separatedBy: "\n\n") where block.contains("event: telemetry") {
        var id: Int?
        var data: String?
        for line in block.split(separator: "\n") {
            if line.hasPrefix("id: ") { id = Int(line.dropFirst(4)) }
            if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
        }
        if let id, let data { events.append(ServerEvent(id: id, data: data)) }
    }
    return events
}

@Suite("SSE stream, /healthz and /metrics", .timeLimit(.minutes(1)))
struct TelemetryStreamServerTests {
    @Test("Last-Event-ID resumes with exactly the missed events, then new ones arrive live, byte-exact")
    func resume() async throws {
        try await withStreamServer { stream, base, client in
            try await stream.export((1...5).map(envelope))
            let result = try await readStream(
                client,
                "\(base)/telemetry/stream",
                headers: [("Authorization", "Bearer sse-secret"), ("Last-Event-ID", "2")],
                until: { events, _ in events.count >= 5 },
                whileOpen: {
                    try await waitUntil("a reader") { stream.latestID == 5 }
                    try await stream.export([envelope(6), envelope(7)])
                }
            )
            #expect(result.events.map(\.id) == [3, 4, 5, 6, 7])
            #expect(result.events.map(\.data) == (3...7).map { String(buffer: envelope($0).envelope) })
        }
    }

    @Test("other events of the channel are published under their own type, in order with telemetry")
    func localEvents() async throws {
        try await withStreamServer { stream, base, client in
            try await stream.export([envelope(1)])
            stream.publish(EventDispatcher.LocalEvent(type: "runner_ready", line: ByteBuffer(string: #"{"type":"runner_ready","runner_job_id":"j"}"#)))
            try await stream.export([envelope(3)])
            let result = try await readStream(
                client,
                "\(base)/telemetry/stream",
                headers: [("Authorization", "Bearer sse-secret"), ("Last-Event-ID", "0")],
                until: { _, text in text.contains("id: 3\n") }
            )
            #expect(result.text.contains("id: 2\nevent: runner_ready\ndata: {\"type\":\"runner_ready\",\"runner_job_id\":\"j\"}\n\n"), "\(result.text)")
            #expect(result.events.map(\.id) == [1, 3])
        }
    }

    @Test("?session= and ?type= filter the stream: one session's envelopes, or one event type, ids unchanged")
    func filters() async throws {
        try await withStreamServer { stream, base, client in
            stream.publish([envelope(1)], session: "a")
            stream.publish([envelope(2)], session: "b")
            stream.publish(EventDispatcher.LocalEvent(type: "runner_ready", line: ByteBuffer(string: #"{"type":"runner_ready"}"#)), session: "a")
            stream.publish([envelope(4)], session: "a")
            let sessionA = try await readStream(
                client,
                "\(base)/telemetry/stream?session=a&jwt=sse-secret",
                headers: [("Last-Event-ID", "0")],
                until: { events, text in text.contains("id: 4\n") }
            )
            #expect(sessionA.text.contains("id: 3\nevent: runner_ready"), "\(sessionA.text)")
            #expect(sessionA.events.map(\.id) == [1, 4])
            let telemetryOfA = try await readStream(
                client,
                "\(base)/telemetry/stream?session=a&type=telemetry&jwt=sse-secret",
                headers: [("Last-Event-ID", "0")],
                until: { events, _ in events.count >= 2 }
            )
            #expect(telemetryOfA.events.map(\.id) == [1, 4])
            #expect(!telemetryOfA.text.contains("runner_ready") && !telemetryOfA.text.contains("id: 2\n"))
        }
    }

    @Test("a new reader without Last-Event-ID gets events from now on; ?jwt= authenticates (EventSource)")
    func fromNowWithQueryToken() async throws {
        try await withStreamServer { stream, base, client in
            try await stream.export((1...3).map(envelope))
            let result = try await readStream(
                client,
                "\(base)/telemetry/stream?jwt=sse-secret",
                until: { events, _ in !events.isEmpty },
                whileOpen: { try await stream.export([envelope(4)]) }
            )
            #expect(result.events.map(\.id) == [4])
        }
    }

    @Test("GET / serves the live page without the token (it holds no data), with a CSP of its own origin only; data routes still need it")
    func livePage() async throws {
        try await withStreamServer { _, base, client in
            for path in ["/", "/ui/common.js", "/ui/page.js", "/ui/page.css"] {
                let response = try await client.execute(HTTPClientRequest(url: base + path), timeout: .seconds(5))
                let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
                #expect(response.status == .ok, "\(path)")
                #expect(response.headers.first(name: "Content-Security-Policy")?.contains("default-src 'none'") == true)
                #expect(response.headers.first(name: "X-Content-Type-Options") == "nosniff")
                // The SVG namespace is a name, not a request.
                let addresses = body.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "")
                #expect(!addresses.contains("http://") && !addresses.contains("https://"), "\(path) must load nothing from elsewhere")
            }
            let page = try await client.execute(HTTPClientRequest(url: base + "/"), timeout: .seconds(5))
            let html = String(buffer: try await page.body.collect(upTo: 1 << 20))
            #expect(html.contains("<script src=\"/ui/page.js\"></script>") && !html.contains("<script>"), "no inline script: the CSP forbids it")
            #expect(try await client.execute(HTTPClientRequest(url: base + "/favicon.ico"), timeout: .seconds(5)).status == .noContent)
            #expect(try await client.execute(HTTPClientRequest(url: base + "/metrics"), timeout: .seconds(5)).status == .unauthorized)
            #expect(try await client.execute(HTTPClientRequest(url: base + "/metrics?jwt=sse-secret"), timeout: .seconds(5)).status == .ok)
        }
    }

    @Test("?last_event_id= resumes like the Last-Event-ID header (a page reopening a refused stream)")
    func lastEventIDQuery() async throws {
        try await withStreamServer(token: nil) { stream, base, client in
            try await stream.export((1...5).map(envelope))
            let result = try await readStream(client, "\(base)/telemetry/stream?last_event_id=3", until: { events, _ in events.count >= 2 })
            #expect(result.events.map(\.id) == [4, 5])
        }
    }

    @Test("?backlog=N starts a new reader with the last N events held (the live page shows what just happened); hostile values are bounded")
    func backlog() async throws {
        try await withStreamServer(token: nil, capacity: 8) { stream, base, client in
            try await stream.export((1...10).map(envelope))
            let last3 = try await readStream(client, "\(base)/telemetry/stream?backlog=3", until: { events, _ in events.count >= 3 })
            #expect(last3.events.map(\.id) == [8, 9, 10])
            let all = try await readStream(client, "\(base)/telemetry/stream?backlog=99999999999999999999", until: { events, _ in events.count >= 8 })
            #expect(all.events.map(\.id) == Array(3...10), "at most what the ring holds")
            let none = try await readStream(
                client, "\(base)/telemetry/stream?backlog=-5", until: { events, _ in !events.isEmpty }, whileOpen: { try await stream.export([envelope(11)]) }
            )
            #expect(none.events.map(\.id) == [11])
        }
    }

    @Test("a Last-Event-ID from before the daemon restarted reads this run's events from its first, none skipped")
    func resumeAcrossRestart() async throws {
        let firstRun = TelemetryStream(capacity: 100, firstID: 1_000)
        try await firstRun.export((1...3).map(envelope))
        let lastSeen = firstRun.latestID
        let secondRun = TelemetryStream(capacity: 100, firstID: TelemetryStream.idsForThisRun())
        #expect(secondRun.firstID > lastSeen)
        try await secondRun.export((4...5).map(envelope))
        let slice = secondRun.events(after: lastSeen)
        #expect(slice.events.map { String(buffer: $0.data) } == [4, 5].map { String(buffer: envelope($0).envelope) })
        #expect(slice.missed == 0)
        #expect(secondRun.publishedCount == 2)
        #expect(TelemetryStream.idsForThisRun() < 1 << 53, "exact as a JavaScript number")
    }

    @Test("a reader further behind than the ring is told how many it missed")
    func tooFarBehind() async throws {
        try await withStreamServer(capacity: 3) { stream, base, client in
            try await stream.export((1...6).map(envelope))
            let result = try await readStream(
                client,
                "\(base)/telemetry/stream",
                headers: [("Authorization", "Bearer sse-secret"), ("Last-Event-ID", "1")],
                until: { events, _ in events.count >= 3 }
            )
            #expect(result.events.map(\.id) == [4, 5, 6])
            #expect(result.text.contains(": 2 events are no longer held"))
        }
    }

    @Test("an idle stream gets one keep-alive comment per interval of the server's clock, none before")
    func keepAlive() async throws {
        let clock = ManualClock()
        try await withStreamServer(keepAlive: .seconds(15), clock: RelayClock(clock)) { _, base, client in
            try await withThrowingTaskGroup(of: (status: UInt, events: [ServerEvent], text: String).self) { group in
                group.addTask {
                    try await readStream(
                        client,
                        "\(base)/telemetry/stream",
                        headers: [("Authorization", "Bearer sse-secret")],
                        until: { _, text in text.components(separatedBy: ": keep-alive").count - 1 >= 3 }
                    )
                }
                for _ in 0..<2 {
                    try await clock.waitForSleepers(1)  // the reader's loop waits for events or the interval
                    clock.advance(by: .seconds(14))
                    #expect(clock.sleepers == 1, "no keep-alive before the interval")
                    clock.advance(by: .seconds(1))
                }
                try await clock.waitForSleepers(1)
                clock.advance(by: .seconds(15))
                let result = try #require(try await group.next())
                #expect(result.events.isEmpty)
                #expect(result.text.components(separatedBy: ": keep-alive").count - 1 == 3, "one per interval advanced")
            }
        }
    }

    @Test("wrong or missing token → 401 on the stream and /metrics; /healthz is open; the token never reaches a log")
    func authentication() async throws {
        let logs = CapturedLogs()
        try await withStreamServer(logger: logs.logger()) { stream, base, client in
            for (path, headers) in [
                ("/telemetry/stream", [("Authorization", "Bearer wrong")]), ("/telemetry/stream?jwt=wrong", []), ("/telemetry/stream", []),
                ("/metrics", []),
            ] {
                #expect(try await readStream(client, base + path, headers: headers, until: { _, _ in true }).status == 401, "\(path)")
            }
            let health = try await client.execute(HTTPClientRequest(url: "\(base)/healthz"), timeout: .seconds(5))
            #expect(health.status == .ok)
            var metrics = HTTPClientRequest(url: "\(base)/metrics")
            metrics.headers.add(name: "Authorization", value: "Bearer sse-secret")
            let answer = try await client.execute(metrics, timeout: .seconds(5))
            #expect(answer.status == .ok)
            #expect(String(buffer: try await answer.body.collect(upTo: 1 << 16)).contains("stream_events_total"))
            try await stream.export([envelope(1)])
            _ = try await readStream(
                client,
                "\(base)/telemetry/stream?jwt=sse-secret",
                headers: [("Last-Event-ID", "0")],
                until: { events, _ in !events.isEmpty }
            )
        }
        #expect(logs.lines.contains { $0.contains("SSE reader connected") && $0.contains("auth=query") })
        #expect(!logs.lines.contains { $0.contains("sse-secret") })
    }
}

@Suite("SSE readers that stop reading are contained", .timeLimit(.minutes(1)))
struct SlowStreamReaderTests {
    @Test("a reader that never reads is dropped after the write timeout, counted; another reader gets every event")
    func stalledReaderDropped() async throws {
        try await withStreamServerAndServer(token: nil, readerWriteTimeout: .seconds(1)) { stream, server, base, client in
            let port = try #require(Int(base.split(separator: ":").last!))
            // A reader that sends its request and never reads a byte of the answer.
            let stalled = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.autoRead, value: false)
                .channelOption(.socketOption(.so_rcvbuf), value: 4096)
                .connect(host: "127.0.0.1", port: port)
                .get()
            defer { stalled.close(promise: nil) }
            try await stalled.writeAndFlush(ByteBuffer(string: "GET /telemetry/stream HTTP/1.1\r\nHost: x\r\n\r\n")).get()
            try await waitUntil("the stalled reader to be served") { server.readerStats.active == 1 }
            // Events keep coming until the stalled reader is dropped: how much of them its connection takes before a
            // write waits (the socket buffers, and the events it skips when it falls behind the ring) depends on the
            // machine's load, so a fixed amount could all fit and leave nothing to time out.
            let big = String(repeating: "x", count: 8 * 1024)
            let deadline = ContinuousClock.now + .seconds(30)
            var next = 0
            while server.readerStats.droppedSlow == 0 {
                try #require(ContinuousClock.now < deadline, "the stalled reader was not dropped after \(next) events of 8 KiB")
                let records = (next..<next + 100).map { n in
                    TelemetryRecord(envelope: ByteBuffer(string: #"{"id":"e\#(n)","type":"stream_trace","data":{"type":"blob","b":"\#(big)"}}"#), seq: 0, lineNumber: n)
                }
                try await stream.export(records)
                next += 100
                await Task.yield()
            }
            #expect(server.readerStats.droppedSlow == 1)
            try await waitUntil("no reader left") { server.readerStats.active == 0 }
            // The stream still serves: a new reader gets what comes next.
            let result = try await readStream(client, "\(base)/telemetry/stream", until: { events, _ in events.count >= 1 }) {
                try await stream.export([envelope(1)])
            }
            #expect(result.status == 200 && result.events.count >= 1)
            let metrics = try await client.send(.GET, "\(base)/metrics")
            #expect(metrics.body.contains("trickle_relay_sse_readers_dropped_total 1"), "\(metrics.body)")
        }
    }

    @Test("readers past the limit are refused with 503 and Retry-After, counted")
    func readerLimit() async throws {
        try await withStreamServerAndServer(token: nil, maximumReaders: 1) { stream, server, base, client in
            let port = try #require(Int(base.split(separator: ":").last!))
            let first = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port)
                .get()
            defer { first.close(promise: nil) }
            try await first.writeAndFlush(ByteBuffer(string: "GET /telemetry/stream HTTP/1.1\r\nHost: x\r\n\r\n")).get()
            try await waitUntil("the first reader to be served") { server.readerStats.active == 1 }
            let second = try await client.send(.GET, "\(base)/telemetry/stream")
            #expect(second.status == 503)
            #expect(second.header("Retry-After") == "5")
            #expect(server.readerStats.refused == 1)
        }
    }
}
