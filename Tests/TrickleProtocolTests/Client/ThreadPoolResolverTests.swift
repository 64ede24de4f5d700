import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
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
            // Noted by callbacks and polled for, not awaited through `get()`: a continuation resumed on the event
            // loop while the awaiting task is still entering it is reported by ThreadSanitizer as a race inside
            // the concurrency runtime (its atomics are not instrumented), and fifty fast rounds hit that window.
            let outcomes = RelayMutex<[Int: String]>([:])
            for (index, future) in [v6, v4].enumerated() {
                future.whenComplete { result in
                    let outcome: String
                    switch result {
                    case .success: outcome = "answered"
                    case .failure(let error): outcome = error is CancellationError ? "cancelled" : "\(error)"
                    }
                    outcomes.withLock { $0[index] = outcome }
                }
            }
            try await waitUntil("both queries to complete") { outcomes.withLock { $0.count == 2 } }
            let both = outcomes.withLock { [$0[0]!, $0[1]!] }
            #expect(both == ["answered", "answered"] || both == ["cancelled", "cancelled"], "\(both)")
        }
    }
}
