import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
@testable import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// The subscriber's own connections resolve host names on the relay's threads, never on a Dispatch worker.
@Suite("ThreadPoolResolver", .timeLimit(.minutes(1)))
struct ThreadPoolResolverTests {
    @Test("an IP literal, localhost, and a name that does not resolve (said in words)")
    func lookups() throws {
        let literal = try ThreadPoolResolver.lookup(host: "127.0.0.1", port: 8080)
        #expect(literal.v4.map(\.ipAddress) == ["127.0.0.1"] && literal.v4.map(\.port) == [8080] && literal.v6.isEmpty)
        let local = try ThreadPoolResolver.lookup(host: "localhost", port: 1)
        #expect((local.v4 + local.v6).contains { $0.ipAddress == "127.0.0.1" || $0.ipAddress == "::1" }, "\(local)")
        let error = #expect(throws: HostNotResolved.self) { try ThreadPoolResolver.lookup(host: "no-such-host.invalid", port: 80) }
        #expect(error?.description.hasPrefix("cannot resolve no-such-host.invalid: ") == true)
    }

    @Test("a subscriber of http://localhost:PORT reads over its own connection, resolved here")
    func subscriberByName() async throws {
        let server = TrickleServer(configuration: .init(host: "127.0.0.1", port: 0), logger: quietLogger)
        server.createChannel(named: "named")
        try await withTestServer(server) { port in
            try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
                _ = try await client.send(.POST, "http://127.0.0.1:\(port)/named/0", body: "hello\n")
                let subscriber = TrickleSubscriber(
                    url: try TrickleChannelURL("http://localhost:\(port)/named"),
                    httpClient: client,
                    configuration: .init(start: .seq(0)),
                    logger: quietLogger
                )
                let seen = Recorder<SeenEvent>()
                let reading = Task { try await subscriber.run { seen.append(SeenEvent($0)) } }
                defer { reading.cancel() }
                try await seen.wait("the segment") { $0.hasEnded(0) }
                #expect(seen.values.text == "hello\n")
            }
        }
    }

    @Test("a cancel racing the lookup: both queries complete, once, the same way")
    func cancelRace() async throws {
        let loop = NIOSingletons.posixEventLoopGroup.any()
        for _ in 0..<50 {
            let resolver = ThreadPoolResolver(loop: loop)
            let v6 = resolver.initiateAAAAQuery(host: "localhost", port: 1)
            let v4 = resolver.initiateAQuery(host: "localhost", port: 1)
            resolver.cancelQueries()
            let outcomes = [await Self.outcome(of: v6), await Self.outcome(of: v4)]
            #expect(outcomes == ["answered", "answered"] || outcomes == ["cancelled", "cancelled"], "\(outcomes)")
        }
    }

    private static func outcome(of future: EventLoopFuture<[SocketAddress]>) async -> String {
        do {
            _ = try await future.get()
            return "answered"
        } catch is CancellationError {
            return "cancelled"
        } catch {
            return "\(error)"
        }
    }
}
