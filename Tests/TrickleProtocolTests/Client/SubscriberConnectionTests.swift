import AsyncHTTPClient
import NIOCore
import Synchronization
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// A subscriber reads a plain-`http` channel over one kept connection of its own: what a server does to that
/// connection (keeps it, closes it after a reply or while idle, cuts a reply short, sends more than the reader
/// takes) must never cost an event or count as a failure it is not.
@Suite("A subscriber's own connection", .timeLimit(.minutes(1)))
struct SubscriberConnectionTests {
    static let configuration = TrickleSubscriber.Configuration(
        start: .seq(0),
        retryBackoff: Backoff(initial: .milliseconds(5), maximum: .milliseconds(20)),
        reconnectGrace: .zero
    )

    /// The seq a request line asks for (`GET /ch/3 HTTP/1.1` → 3).
    static func seq(of requestLine: String) -> Int? {
        requestLine.split(separator: " ").dropFirst().first.flatMap { $0.split(separator: "/").last }.flatMap { Int($0) }
    }

    /// Segments 0…2 carry one line each, then the channel is closed.
    static func threeSegments(closing: Bool, header: Bool) -> RawScriptedServer.Script {
        { requestLine, _ in
            guard let seq = Self.seq(of: requestLine) else { return .status(400) }
            var headers = ["Lp-Trickle-Seq": "\(seq)"]
            if header { headers["Connection"] = "close" }
            if seq >= 3 {
                headers["Lp-Trickle-Closed"] = "terminated"
                return .status(200, headers: headers, closesConnection: closing)
            }
            return .status(200, headers: headers, body: "{\"n\":\(seq)}\n", closesConnection: closing)
        }
    }

    /// Follows `ch` on `server` to its end; returns how it ended, the counters, and the bytes of every segment.
    static func follow(_ server: RawScriptedServer) async throws -> (TrickleSubscriber.EndOfStream, TrickleSubscriber.Stats, [Int: String]) {
        try await server.run { base in
            try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
                // The connections counted here are the subscriber's: the watch for the server's return after a GET
                // without an answer (a TCP connect every 0.5 s while one waits) is kept out of them — on a loaded
                // machine one of its connects can fall into a back-off of a few milliseconds.
                var configuration = Self.configuration
                configuration.serverReturn = HTTPOrigin(url: base).map { ServerReturnWatch(origin: $0, probeInterval: .seconds(3600)) }
                let subscriber = TrickleSubscriber(
                    url: try TrickleChannelURL("\(base)/ch"),
                    httpClient: client,
                    configuration: configuration,
                    logger: quietLogger
                )
                let segments = RelayMutex<[Int: String]>([:])
                let end = try await subscriber.run { event in
                    if case .bytes(let chunk, let seq) = event {
                        segments.withLock { $0[seq, default: ""] += String(buffer: chunk) }
                    }
                }
                return (end, subscriber.stats, segments.withLock { $0 })
            }
        }
    }

    static let expected = [0: "{\"n\":0}\n", 1: "{\"n\":1}\n", 2: "{\"n\":2}\n"]

    @Test("every segment is read over one connection the server keeps alive")
    func keptConnection() async throws {
        let server = RawScriptedServer(script: Self.threeSegments(closing: false, header: false))
        let (end, stats, segments) = try await Self.follow(server)
        #expect(end == .closed)
        #expect(segments == Self.expected)
        #expect(server.connectionsAccepted == 1, "one kept connection, not one per GET")
        #expect(stats.retries == 0)
    }

    @Test(
        "a server that closes the connection after each reply, with or without Connection: close, costs no event and no retry",
        arguments: [false, true]
    )
    func closedAfterEachReply(announced: Bool) async throws {
        let server = RawScriptedServer(script: Self.threeSegments(closing: true, header: announced))
        let (end, stats, segments) = try await Self.follow(server)
        #expect(end == .closed)
        #expect(segments == Self.expected)
        #expect(server.connectionsAccepted == 4)
        #expect(stats.retries == 0, "a connection the server closed between replies is replaced, not a failure")
    }

    @Test("interim 1xx replies before each reply are skipped, not taken for it")
    func interimReplies() async throws {
        let script = Self.threeSegments(closing: false, header: false)
        let server = RawScriptedServer { requestLine, index in
            let reply = script(requestLine, index)
            return .init("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n" + reply.bytes)
        }
        let (end, stats, segments) = try await Self.follow(server)
        #expect(end == .closed)
        #expect(segments == Self.expected)
        #expect(stats.retries == 0 && stats.protocolErrors == 0)
    }

    @Test(
        "a reply that is not HTTP, or whose head is too large, is a failure retried on a new connection",
        arguments: ["garbage\r\n\r\n", "HTTP/1.1 200 OK\r\nX-Big: \(String(repeating: "a", count: 200_000))\r\n\r\n"]
    )
    func unparsableReply(bytes: String) async throws {
        let script = Self.threeSegments(closing: false, header: false)
        let server = RawScriptedServer { requestLine, index in
            index < 2 ? .init(bytes, closesConnection: false) : script(requestLine, index)
        }
        let (end, stats, segments) = try await Self.follow(server)
        #expect(end == .closed)
        #expect(segments == Self.expected)
        #expect(stats.retries == 2)
        #expect(server.connectionsAccepted == 3, "a connection out of step with its server is never reused")
    }

    @Test(
        "a reply framed so that the next could be misread (chunked beside a length, or ended by the close) is read whole, and its connection is not reused",
        arguments: [true, false]
    )
    func framingThatForbidsReuse(chunkedBesideLength: Bool) async throws {
        let server = RawScriptedServer { requestLine, _ in
            guard let seq = Self.seq(of: requestLine) else { return .status(400) }
            guard seq < 3 else { return .status(200, headers: ["Lp-Trickle-Seq": "\(seq)", "Lp-Trickle-Closed": "terminated"]) }
            let line = "{\"n\":\(seq)}\n"
            if chunkedBesideLength {
                let hex = String(line.utf8.count, radix: 16)
                return .init(
                    "HTTP/1.1 200 OK\r\nLp-Trickle-Seq: \(seq)\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n\(hex)\r\n\(line)\r\n0\r\n\r\n",
                    closesConnection: false
                )
            }
            return .init("HTTP/1.1 200 OK\r\nLp-Trickle-Seq: \(seq)\r\n\r\n\(line)", closesConnection: true)
        }
        let (end, stats, segments) = try await Self.follow(server)
        #expect(end == .closed)
        #expect(segments == Self.expected)
        #expect(stats.retries == 0)
        #expect(server.connectionsAccepted == 4, "one connection per reply: none was trusted with another GET")
    }

    @Test("a 404 whose body never ends is read to 64 KiB, not forever: the stream ends")
    func endlessErrorBody() async throws {
        // The head promises 100 MB; 100 KB come and the connection stays open.
        let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 100000000\r\n\r\n"
        let server = RawScriptedServer { _, _ in .init(head + String(repeating: "x", count: 100_000)) }
        let (end, _, segments) = try await Self.follow(server)
        #expect(end == .notFound)
        #expect(segments.isEmpty)
    }

    @Test("a reply cut short is resumed where it broke off: every byte once")
    func cutShort() async throws {
        let full = "{\"a\":1}\n{\"b\":22222}\n"  // 20 bytes
        let server = RawScriptedServer { requestLine, index in
            switch Self.seq(of: requestLine) {
            case 0 where index == 0:
                // The head promises 20 bytes; 8 come, then the connection closes.
                return .init("HTTP/1.1 200 OK\r\nLp-Trickle-Seq: 0\r\nContent-Length: 20\r\n\r\n{\"a\":1}\n", closesConnection: true)
            case 0:
                return .status(200, headers: ["Lp-Trickle-Seq": "0"], body: full)
            default:
                return .status(200, headers: ["Lp-Trickle-Seq": "1", "Lp-Trickle-Closed": "terminated"])
            }
        }
        let (end, stats, segments) = try await Self.follow(server)
        #expect(end == .closed)
        #expect(segments == [0: full])
        #expect(stats.retries == 1)
        #expect(stats.segments == 1)
    }

    @Test("a reader slower than its connection gets every byte of a 16 MiB segment, in order")
    func slowReader() async throws {
        let line = "{\"k\":\"\(String(repeating: "x", count: 1000))\"}\n"
        let lines = 16 * 1024 * 1024 / line.utf8.count
        let body = String(repeating: line, count: lines)
        let server = RawScriptedServer { requestLine, _ in
            Self.seq(of: requestLine) == 0
                ? .status(200, headers: ["Lp-Trickle-Seq": "0"], body: body)
                : .status(200, headers: ["Lp-Trickle-Seq": "1", "Lp-Trickle-Closed": "terminated"])
        }
        try await server.run { base in
            try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
                var configuration = Self.configuration
                configuration.maximumSegmentBytes = 32 * 1024 * 1024
                let subscriber = TrickleSubscriber(url: try TrickleChannelURL("\(base)/ch"), httpClient: client, configuration: configuration, logger: quietLogger)
                let received = RelayMutex(ByteBuffer())
                let end = try await subscriber.run { event in
                    guard case .bytes(var chunk, _) = event else { return }
                    // Slower than the socket: the connection gets ahead and must stop reading, then go on.
                    for _ in 0..<20 { await Task.yield() }
                    received.withLock { _ = $0.writeBuffer(&chunk) }
                }
                #expect(end == .closed)
                let got = received.withLock { $0 }
                #expect(got.readableBytes == body.utf8.count)
                #expect(got == ByteBuffer(string: body))
                #expect(subscriber.stats.retries == 0)
            }
        }
    }
}
