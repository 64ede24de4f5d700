import AsyncHTTPClient
import HTTPTypes
import Logging
import NIOCore
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Issue #9 item 9: a failure state is heard at the default level when it starts, is not repeated per retry,
/// and is heard again when it clears.
@Suite("Failure states are logged once, throttled, and cleared", .timeLimit(.minutes(1)))
struct FailureLoggingTests {
    @Test("FailureState: started, silent within the interval, ongoing with the count, cleared with the count")
    func stateMachine() {
        var state = FailureState<ContinuousClock.Instant>(interval: .seconds(30))
        let start = ContinuousClock.now
        #expect(state.failed(at: start) == .started)
        #expect(state.failed(at: start + .seconds(1)) == .none)
        #expect(state.failed(at: start + .seconds(29)) == .none)
        #expect(state.failed(at: start + .seconds(31)) == .ongoing(failures: 4, duration: .seconds(31)))
        #expect(state.failed(at: start + .seconds(32)) == .none)
        #expect(state.succeeded(at: start + .seconds(40)) == .cleared(failures: 5, duration: .seconds(40)))
        #expect(state.succeeded(at: start + .seconds(41)) == .none)
        #expect(state.failed(at: start + .seconds(50)) == .started)
    }

    @Test("ProblemThrottle: the first few in full, then one aggregate per interval, then the rest at the end")
    func problemThrottle() {
        var throttle = ProblemThrottle(detailedPerKind: 3, interval: .seconds(10))
        let start = RelayClock.Instant(offset: .zero)
        var decisions: [ProblemThrottle.Decision] = []
        for n in 0..<1_000 { decisions.append(throttle.note("malformed_json", at: start + .milliseconds(n * 20))) }
        #expect(decisions.prefix(3).allSatisfy { $0 == .detailed })
        let aggregates = decisions.compactMap { decision -> Int? in
            if case .aggregate(let count) = decision { return count }
            return nil
        }
        #expect(aggregates.count == 1)  // 20 s of reports at 10 s intervals after the detailed ones
        #expect(throttle.note("not_an_object", at: start) == .detailed)  // kinds are throttled separately
        let rest = throttle.drainSuppressed()
        #expect(aggregates.reduce(0, +) + rest.reduce(0) { $0 + $1.count } == 997)
    }

    @Test("a subscriber pointed at a server that is not there warns at once, not once per retry")
    func unreachableSubscriber() async throws {
        let logs = CapturedLogs()
        let port = 1  // nothing listens on port 1 (a port picked as unused could be taken by another test meanwhile)
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            let subscriber = TrickleSubscriber(
                url: try TrickleChannelURL("http://127.0.0.1:\(port)/ch"),
                httpClient: client,
                configuration: .init(retryBackoff: Backoff(initial: .milliseconds(5), maximum: .milliseconds(10)), maximumConsecutiveFailures: 20),
                logger: logs.logger()
            )
            await #expect(throws: TrickleClientError.self) { _ = try await subscriber.run { _ in } }
        }
        let warnings = logs.lines.filter { $0.hasPrefix("warning") }
        #expect(warnings.count == 1, "\(warnings)")
        #expect(warnings.first?.contains("trickle server not answering") == true)
    }

    @Test("a publisher whose server is down warns once when it starts failing, not once per retry")
    func publisherServerDown() async throws {
        let logs = CapturedLogs()
        let port = 1  // nothing listens on port 1 (a port picked as unused could be taken by another test meanwhile)
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            var configuration = TricklePublisher.Configuration(start: .seq(0))
            configuration.retryBackoff = Backoff(initial: .milliseconds(5), maximum: .milliseconds(10))
            // Eleven retries logged as one warning. (This test once timed out now and then with its publisher
            // standing still for 20 s: the test process's own tasks were starved — helpers blocked Dispatch workers
            // reading child processes' pipes, and Swift concurrency runs on the same root queue. Those reads now run
            // on threads of their own, `onDedicatedThread`.)
            configuration.maximumConsecutiveFailures = 12
            let publisher = TricklePublisher(
                url: try TrickleChannelURL("http://127.0.0.1:\(port)/ch"),
                httpClient: client,
                configuration: configuration,
                logger: logs.logger()
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await publisher.run() }
                try await publisher.write(ByteBuffer(string: "{\"a\":1}\n"))
                try await waitUntil("the publisher to give up") { publisher.stats.retries >= 11 }
                try? await publisher.close()
                try await group.waitForAll()
            }
        }
        let failing = logs.lines.filter { $0.hasPrefix("warning") && $0.contains("trickle server not accepting segments") }
        #expect(failing.count == 1, "\(logs.lines)")
        #expect(logs.lines.contains { $0.hasPrefix("warning") && $0.contains("publisher stopped") })
    }
}
