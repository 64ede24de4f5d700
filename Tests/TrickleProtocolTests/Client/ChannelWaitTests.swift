import HTTPTypes
import NIOCore
import Synchronization
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// A subscription registered before its channel exists waits at almost no cost (issue #27): once its asks are
/// far apart they go to `GET …/next` over the shared client's kept-alive connections, not a new connection and
/// segment GET per ask; a server without `/next` is asked with the GET.
@Suite("Waiting for a channel", .timeLimit(.minutes(1)))
struct ChannelWaitTests {
    /// Short delays growing past the shared-ask threshold within a few asks.
    static let configuration: TrickleSubscriber.Configuration = {
        var configuration = TrickleSubscriber.Configuration(
            start: .seq(0),
            aheadRetryDelay: .milliseconds(5),
            channelWaitTimeout: .seconds(30),
            reconnectGrace: .zero  // the scripted 404 after the data is the end
        )
        configuration.channelWaitMaximumDelay = .milliseconds(40)
        configuration.channelWaitAsksSharedAfter = .milliseconds(20)
        return configuration
    }()

    /// Follows `ch` on the scripted server until it ends; returns the bytes read.
    static func follow(_ server: ScriptedHTTPServer) async throws -> String {
        let (_, _, events) = try await HostileServerTests.subscribe(to: server, configuration: Self.configuration)
        return events.reduce(into: "") { text, event in
            if case .bytes(let chunk, _) = event { text += String(buffer: chunk) }
        }
    }

    @Test("asks far apart go to /next; the segment GET follows once /next says the channel exists")
    func asksWithNext() async throws {
        let nextAsks = Atomic(0)
        let server = ScriptedHTTPServer { request, _ in
            switch request.path {
            case "/ch/next":
                // The channel appears at the fifth ask.
                let asked = nextAsks.add(1, ordering: .relaxed).newValue
                return asked < 5 ? .init(.notFound, body: "Stream not found") : .init(.ok, headers: [TrickleHeaders.latest: "1"], body: "1")
            case "/ch/0" where nextAsks.load(ordering: .relaxed) >= 5:
                return .init(.ok, headers: [TrickleHeaders.seq: "0"], body: "late but here\n")
            default:
                return .init(.notFound, body: "Stream not found")
            }
        }
        #expect(try await Self.follow(server) == "late but here\n")
        let paths = server.requests.map(\.path)
        let firstNext = try #require(paths.firstIndex(of: "/ch/next"))
        let fifthNext = try #require(paths.indices.filter { paths[$0] == "/ch/next" }.dropFirst(4).first)
        #expect(paths.filter { $0 == "/ch/next" }.count == 5)
        #expect(!paths[firstNext..<fifthNext].contains("/ch/0"), "once asks are far apart, no segment GET until /next finds the channel: \(paths)")
        #expect(paths[fifthNext...].contains("/ch/0"))
    }

    @Test("a server without /next (400, like the sample server) is asked once and then with the segment GET")
    func serverWithoutNext() async throws {
        let segmentAsks = Atomic(0)
        let server = ScriptedHTTPServer { request, _ in
            switch request.path {
            case "/ch/next":
                return .init(.badRequest, body: "invalid seq")
            case "/ch/0":
                let asked = segmentAsks.add(1, ordering: .relaxed).newValue
                return asked < 12 ? .init(.notFound, body: "Stream not found") : .init(.ok, headers: [TrickleHeaders.seq: "0"], body: "late but here\n")
            default:
                return .init(.notFound, body: "Stream not found")
            }
        }
        #expect(try await Self.follow(server) == "late but here\n")
        #expect(server.requests.filter { $0.path == "/ch/next" }.count == 1)
    }

    @Test("ahead of a restarted server where nothing is written yet (470, latest 0), the subscriber keeps waiting for its seq instead of resyncing to 0")
    func aheadOfAnEmptyRestartedChannel() async throws {
        let asks = Atomic(0)
        let server = ScriptedHTTPServer { request, _ in
            switch request.path {
            case "/ch/3":
                // The runner re-sends seq 3 only after several asks (a slow recovery).
                let asked = asks.add(1, ordering: .relaxed).newValue
                return asked <= 8
                    ? .init(.init(code: 470), headers: [TrickleHeaders.seq: "3", TrickleHeaders.latest: "0"], body: "Entry not found")
                    : .init(.ok, headers: [TrickleHeaders.seq: "3"], body: "re-sent\n")
            default:
                return .init(.notFound, body: "Stream not found")
            }
        }
        var configuration = TrickleSubscriber.Configuration(start: .seq(3), aheadRetryDelay: .milliseconds(5), reconnectGrace: .zero)
        configuration.maximumAheadRetries = 2
        let (_, stats, events) = try await HostileServerTests.subscribe(to: server, configuration: configuration)
        let text = events.reduce(into: "") { text, event in
            if case .bytes(let chunk, _) = event { text += String(buffer: chunk) }
        }
        #expect(text == "re-sent\n")
        #expect(stats.resets == 0)
        #expect(!server.requests.contains { $0.path == "/ch/0" }, "no resync to the empty channel's nextWrite")
    }
}
