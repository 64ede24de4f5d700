import AsyncHTTPClient
import ClientEgress
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycleTestKit
import Synchronization
import Testing
import TrickleProtocol
import TrickleTestSupport

private func envelope(_ id: String, _ extra: String = "") -> TelemetryRecord {
    TelemetryRecord(
        envelope: ByteBuffer(string: #"{"id":"\#(id)","type":"stream_trace","timestamp":"1763719200000","data":{"type":"metric","v":1.0e3\#(extra)}}"#),
        seq: 0,
        lineNumber: 1
    )
}

private let fastConfiguration: @Sendable (String) -> MetricsReporter.Configuration = { url in
    MetricsReporter.Configuration(
        url: url,
        host: "test-host",
        flushInterval: .milliseconds(20),
        retryBackoff: Backoff(initial: .milliseconds(10), maximum: .milliseconds(40))
    )
}

/// Runs a reporter against an endpoint while `body` runs, then shuts it down.
private func withReporter(
    _ endpoint: ScriptedEndpoint,
    key: @escaping @Sendable () -> String? = { "key-1" },
    logger: Logger = quietLogger,
    configure: @Sendable (inout MetricsReporter.Configuration) -> Void = { _ in },
    _ body: @Sendable (MetricsReporter) async throws -> Void
) async throws {
    try await endpoint.run { url in
        try await HTTPClient.withHTTPClient { client in
            var configuration = fastConfiguration(url)
            configure(&configuration)
            let reporter = MetricsReporter(configuration: configuration, httpClient: client, apiKey: key, logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await reporter.run() }
                try await body(reporter)
                await reporter.shutdown()
                try await group.waitForAll()
            }
        }
    }
}

@Suite("MetricsReporter against a scripted endpoint", .timeLimit(.minutes(1)))
struct MetricsReporterTests {
    @Test("500, 500, 200: back-off and retry; every event arrives once, with the documented body and headers")
    func serverErrors() async throws {
        let endpoint = ScriptedEndpoint { _, index in (index < 2 ? .internalServerError : .ok, [:]) }
        try await withReporter(endpoint) { reporter in
            try await reporter.export((0..<10).map { envelope("e\($0)") })
            try await waitUntil("the events to land") { Set(endpoint.acceptedIDs).count == 10 }
            #expect(reporter.stats.retries == 2)
        }
        #expect(Set(endpoint.acceptedIDs) == Set((0..<10).map { "e\($0)" }))
        let (request, _) = try #require(endpoint.requests.last)
        #expect(request.authorization == "Bearer key-1")
        #expect(request.idempotencyKey == endpoint.requests[0].0.idempotencyKey)  // the same batch, the same key
        #expect(request.body.hasPrefix(#"{"app":"trickle-relay","host":"test-host","events":[{"type":"metric","data":{"type":"metric","v":1.0e3},"id":"e0","timestamp":"1763719200000"}"#))
    }

    @Test("401 pauses sending and keeps buffering; a refreshed key resumes it")
    func unauthorized() async throws {
        let key = Mutex("old-key")
        let endpoint = ScriptedEndpoint { request, _ in (request.authorization == "Bearer new-key" ? .ok : .unauthorized, [:]) }
        try await withReporter(endpoint, key: { key.withLock { $0 } }) { reporter in
            try await reporter.export([envelope("a1"), envelope("a2")])
            try await waitUntil("a 401") { reporter.stats.unauthorized >= 1 }
            try await reporter.export([envelope("a3")])  // still buffered while paused
            #expect(endpoint.acceptedIDs.isEmpty)
            key.withLock { $0 = "new-key" }
            try await waitUntil("the events to land") { Set(endpoint.acceptedIDs).count == 3 }
        }
        #expect(Set(endpoint.acceptedIDs) == ["a1", "a2", "a3"])
    }

    @Test("429 with Retry-After: 1 waits a second, then sends")
    func tooManyRequests() async throws {
        let endpoint = ScriptedEndpoint { _, index in index == 0 ? (.tooManyRequests, [.retryAfter: "1"]) : (.ok, [:]) }
        let started = ContinuousClock.now
        try await withReporter(endpoint) { reporter in
            try await reporter.export([envelope("r1")])
            try await waitUntil("the event to land") { endpoint.acceptedIDs == ["r1"] }
        }
        #expect(ContinuousClock.now - started >= .seconds(1))
        #expect(MetricsReporterTestsSupport.retryAfter("Wed, 21 Oct 2015 07:28:00 GMT") == .zero)
    }

    @Test("413: batches are halved until they fit; a single event still too large is dropped with its id logged")
    func payloadTooLarge() async throws {
        let logs = CapturedLogs()
        let endpoint = ScriptedEndpoint { request, _ in
            (request.ids.count > 3 || request.body.contains("HUGE") ? .contentTooLarge : .ok, [:])
        }
        try await withReporter(endpoint, logger: logs.logger()) { reporter in
            try await reporter.export((0..<10).map { envelope("b\($0)") } + [envelope("huge-1", #","blob":"HUGE""#)])
            try await waitUntil("all but the huge event to land") { Set(endpoint.acceptedIDs).count == 10 && reporter.stats.tooLarge == 1 }
        }
        #expect(Set(endpoint.acceptedIDs) == Set((0..<10).map { "b\($0)" }))
        #expect(endpoint.requests.allSatisfy { $0.1 != .ok || $0.0.ids.count <= 3 })
        let dropped = logs.lines.filter { $0.contains("too large") }
        #expect(dropped.count == 1 && dropped[0].contains("metrics.id=huge-1"))
    }

    @Test("400 drops exactly that batch and logs why and which ids")
    func badRequest() async throws {
        let logs = CapturedLogs()
        let endpoint = ScriptedEndpoint { request, _ in (request.body.contains("BAD") ? .badRequest : .ok, [:]) }
        try await withReporter(endpoint, logger: logs.logger()) { reporter in
            try await reporter.export([envelope("g1")])
            try await waitUntil("g1") { endpoint.acceptedIDs == ["g1"] }
            try await reporter.export([envelope("x1", #","mark":"BAD""#)])
            try await waitUntil("the rejection") { reporter.stats.rejected == 1 }
            try await reporter.export([envelope("g2")])
            try await waitUntil("g2") { endpoint.acceptedIDs == ["g1", "g2"] }
        }
        let rejected = logs.lines.filter { $0.contains("rejected") }
        #expect(rejected.count == 1 && rejected[0].contains("metrics.ids=x1"))
    }

    @Test("what cannot be held is counted, never silently lost")
    func overflow() async throws {
        let endpoint = ScriptedEndpoint { _, _ in (.serviceUnavailable, [:]) }
        try await withReporter(endpoint, configure: { $0.maximumBufferedEvents = 5 }) { reporter in
            try await reporter.export((0..<8).map { envelope("o\($0)") })
            #expect(reporter.stats.overflowed == 3)
            #expect(reporter.stats.buffered == 5)
        }
    }
}

enum MetricsReporterTestsSupport {
    static func retryAfter(_ value: String) -> Duration? {
        MetricsReporter.retryAfterForTesting(value)
    }
}
