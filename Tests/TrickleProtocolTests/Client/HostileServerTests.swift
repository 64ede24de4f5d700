import AsyncHTTPClient
import HTTPTypes
import NIOCore
import Synchronization
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// A server that answers with numbers a real one never sends must not crash or mislead a client of ours
/// (issue #9, items 1–2): every such answer is a counted protocol error, retried with back-off.
@Suite("Hostile trickle servers", .timeLimit(.minutes(1)))
struct HostileServerTests {
    static let quickRetries = TrickleSubscriber.Configuration(
        start: .seq(0),
        retryBackoff: Backoff(initial: .milliseconds(5), maximum: .milliseconds(20)),
        reconnectGrace: .zero  // the scripted 404 is the end here, not a restarting server
    )

    /// Subscribes to `ch` on the scripted server until the stream ends; returns how, the counters, and every event.
    static func subscribe(
        to server: ScriptedHTTPServer,
        configuration: TrickleSubscriber.Configuration = Self.quickRetries
    ) async throws -> (TrickleSubscriber.EndOfStream, TrickleSubscriber.Stats, [TrickleSubscriberEvent]) {
        try await server.run { base in
            try await HTTPClient.withHTTPClient { client in
                let subscriber = TrickleSubscriber(
                    url: try TrickleChannelURL("\(base)/ch"),
                    httpClient: client,
                    configuration: configuration,
                    logger: quietLogger
                )
                let events = RelayMutex<[TrickleSubscriberEvent]>([])
                let end = try await subscriber.run { event in events.withLock { $0.append(event) } }
                return (end, subscriber.stats, events.withLock { $0 })
            }
        }
    }

    @Test(
        "a 200 whose Lp-Trickle-Seq is huge, negative, not a number or not the seq asked for is a protocol error",
        arguments: ["9223372036854775807", "-5", "seven", "99999999999999999999999", "3"]
    )
    func hostileSeqOn200(value: String) async throws {
        let server = ScriptedHTTPServer { request, index in
            // Three hostile answers, then the channel is gone: the subscriber must survive and end cleanly.
            if index < 3 {
                return .init(.ok, headers: [TrickleHeaders.seq: value], body: "{\"a\":1}\n")
            }
            return .init(.notFound, body: "Stream not found")
        }
        let (end, stats, events) = try await Self.subscribe(to: server)
        #expect(end == .notFound)
        #expect(stats.protocolErrors == 3)
        let bytes = events.reduce(0) { total, event in
            if case .bytes(let chunk, _) = event { return total + chunk.readableBytes }
            return total
        }
        #expect(bytes == 0, "bytes of a reply that broke the protocol must not be handed on")
        #expect(server.requests.allSatisfy { $0.path == "/ch/0" }, "the subscriber must keep asking for the seq it wanted")
    }

    @Test(
        "a 470 whose Lp-Trickle-Latest is missing, huge, negative or not a number is a protocol error",
        arguments: [nil, "9223372036854775807", "-1", "x"] as [String?]
    )
    func hostileLatestOn470(value: String?) async throws {
        let server = ScriptedHTTPServer { _, index in
            if index < 2 {
                var headers: HTTPFields = [TrickleHeaders.seq: "0"]
                if let value { headers[TrickleHeaders.latest] = value }
                return .init(.init(code: 470), headers: headers, body: "Entry not found")
            }
            return .init(.notFound)
        }
        let (end, stats, events) = try await Self.subscribe(to: server)
        #expect(end == .notFound)
        #expect(stats.protocolErrors == 2)
        let gaps = events.filter { if case .gap = $0 { return true } else { return false } }.count
        #expect(gaps == 0, "no gap may be computed from a hostile Latest")
    }

    @Test("a publisher whose /next answers a nextWrite out of range starts at 0 and counts a protocol error")
    func hostileNext() async throws {
        let server = ScriptedHTTPServer { request, _ in
            if request.path.hasSuffix("/next") {
                return .init(.ok, headers: [TrickleHeaders.latest: "9223372036854775807"], body: "9223372036854775807")
            }
            return .init(.ok, headers: [TrickleHeaders.seq: "0"])
        }
        try await server.run { base in
            try await HTTPClient.withHTTPClient { client in
                let publisher = TricklePublisher(url: try TrickleChannelURL("\(base)/ch"), httpClient: client, logger: quietLogger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await publisher.run() }
                    try await publisher.write(ByteBuffer(string: "{\"a\":1}\n"))
                    try await publisher.close()
                    try await group.waitForAll()
                }
                #expect(publisher.stats.protocolErrors == 1)
                #expect(server.requests.contains { $0.method == .post && $0.path == "/ch/0" && $0.body == "{\"a\":1}\n" })
            }
        }
    }
}
