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
import TrickleRelaySupport
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

    @Test("over HTTPS: a server whose CA is not trusted is a failure state in words (events kept); the CA handed in by a TLS reload delivers them, no restart")
    func trustReloaded() async throws {
        let certificates = try await TestCertificates.shared()
        let endpoint = ScriptedEndpoint { _, _ in (.ok, [:]) }
        let outbound = try OutboundTLSContext(try OutboundTLS().configuration())
        let logs = CapturedLogs()
        try await endpoint.run(tls: try certificates.server.serverConfiguration()) { url in
            // The client's own configuration trusts the system only, as the process's did before the reload.
            try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
                var configuration = fastConfiguration(url)
                configuration.tls = outbound
                let reporter = MetricsReporter(configuration: configuration, httpClient: client, apiKey: { "key-1" }, logger: logs.logger())
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await reporter.run() }
                    try await reporter.export([envelope("t1"), envelope("t2")])
                    try await waitUntil("the untrusted certificate to fail a request twice") { reporter.stats.retries >= 2 }
                    #expect(endpoint.requests.isEmpty)
                    try outbound.replace(with: try OutboundTLS(caFile: certificates.ca).configuration())
                    try await waitUntil("the events to land over the reloaded trust") { Set(endpoint.acceptedIDs) == ["t1", "t2"] }
                    await reporter.shutdown()
                    try await group.waitForAll()
                }
            }
        }
        let warnings = logs.lines.filter { $0.contains("failing") }
        #expect(warnings.contains { $0.contains("--ca-file") && $0.contains("127.0.0.1:") }, "\(warnings)")
        let shown = logs.lines.filter { !$0.hasPrefix("debug") && !$0.hasPrefix("trace") }  // info and above
        #expect(!shown.contains { $0.contains("BoringSSL") || $0.contains("CERTIFICATE_VERIFY_FAILED") }, "\(shown)")
    }

    @Test("401 pauses sending and keeps buffering; a refreshed key resumes it")
    func unauthorized() async throws {
        let key = RelayMutex("old-key")
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

    @Test("a key fixed while the rejected request was on its way: sending resumes (the pause compares with the key that request carried)")
    func keyChangedDuringTheRejectedRequest() async throws {
        let key = RelayMutex("old-key")
        let endpoint = ScriptedEndpoint { request, _ in
            guard request.authorization == "Bearer new-key" else {
                key.withLock { $0 = "new-key" }  // the operator's fix lands before the 401 reaches the reporter
                return (.unauthorized, [:])
            }
            return (.ok, [:])
        }
        try await withReporter(endpoint, key: { key.withLock { $0 } }) { reporter in
            try await reporter.export([envelope("k1")])
            try await waitUntil("the event to land with the new key") { endpoint.acceptedIDs == ["k1"] }
            #expect(reporter.stats.unauthorized == 1)
        }
    }

    @Test("429 with Retry-After: 1 waits exactly a second of the reporter's clock, then sends")
    func tooManyRequests() async throws {
        let endpoint = ScriptedEndpoint { _, index in index == 0 ? (.tooManyRequests, [.retryAfter: "1"]) : (.ok, [:]) }
        let clock = ManualClock()
        try await withReporter(endpoint, configure: { $0.clock = RelayClock(clock) }) { reporter in
            // An idle reporter waits for a full batch or its flush interval: on this clock, until the test moves it.
            // (Exporting before it went idle sent at once, sometimes: the test raced the reporter's start.)
            try await clock.waitForSleepers(1)
            try await reporter.export([envelope("r1")])
            #expect(endpoint.requests.isEmpty, "a batch that is not full waits for the flush interval")
            clock.advance(by: .milliseconds(20))
            try await waitUntil("the 429") { reporter.stats.retries == 1 }
            try await clock.waitForSleepers(1)  // Retry-After
            clock.advance(by: .milliseconds(999))
            #expect(clock.sleepers == 1 && endpoint.requests.count == 1, "nothing is sent before the second is over")
            clock.advance(by: .milliseconds(1))
            try await waitUntil("the event to land") { endpoint.acceptedIDs == ["r1"] }
            #expect(endpoint.requests.count == 2)
        }
        #expect(MetricsReporterTestsSupport.retryAfter("Wed, 21 Oct 2015 07:28:00 GMT") == .zero)
        // An endpoint's absurd numbers are cut to the longest wait we honour (never a trap, never a hang).
        #expect(MetricsReporterTestsSupport.retryAfter("9223372036854775807") == .seconds(600))
        #expect(MetricsReporterTestsSupport.retryAfter("99999999999999999999999999") == .seconds(600))
        #expect(MetricsReporterTestsSupport.retryAfter("Fri, 31 Dec 9999 23:59:59 GMT") == .seconds(600))
        #expect(MetricsReporterTestsSupport.retryAfter("-5") == nil)
    }

    @Test("413: batches are halved until they fit; a single event still too large (≥ 64 KiB) is dropped with its id logged")
    func payloadTooLarge() async throws {
        let logs = CapturedLogs()
        let endpoint = ScriptedEndpoint { request, _ in
            (request.ids.count > 3 || request.body.contains("HUGE") ? .contentTooLarge : .ok, [:])
        }
        try await withReporter(endpoint, logger: logs.logger()) { reporter in
            try await reporter.export((0..<10).map { envelope("b\($0)") } + [envelope("huge-1", #","blob":"HUGE\#(String(repeating: "x", count: 70_000))""#)])
            try await waitUntil("all but the huge event to land") { Set(endpoint.acceptedIDs).count == 10 && reporter.stats.tooLarge == 1 }
        }
        #expect(Set(endpoint.acceptedIDs) == Set((0..<10).map { "b\($0)" }))
        #expect(endpoint.requests.allSatisfy { $0.1 != .ok || $0.0.ids.count <= 3 })
        let dropped = logs.lines.filter { $0.contains("too large") }
        #expect(dropped.count == 1 && dropped[0].contains("metrics.id=huge-1"))
    }

    @Test("413 for one small event is the endpoint's misconfiguration: back off, keep every event, warn once; deliver when it recovers")
    func payloadTooLargeForSmallEvents() async throws {
        let logs = CapturedLogs()
        let refusing = Atomic(true)
        let endpoint = ScriptedEndpoint { _, _ in (refusing.load(ordering: .relaxed) ? .contentTooLarge : .ok, [:]) }
        try await withReporter(endpoint, logger: logs.logger()) { reporter in
            try await reporter.export((0..<5).map { envelope("s\($0)") })
            // Halved down to one event, then backing off on it: many refusals, nothing dropped.
            try await waitUntil("the reporter to retry single events") {
                endpoint.requests.filter { $0.0.ids.count == 1 }.count >= 4
            }
            #expect(reporter.stats.tooLarge == 0)
            #expect(reporter.stats.buffered == 5)
            refusing.store(false, ordering: .relaxed)
            try await waitUntil("every event to land") { Set(endpoint.acceptedIDs).count == 5 }
        }
        #expect(Set(endpoint.acceptedIDs) == Set((0..<5).map { "s\($0)" }))
        let warnings = logs.lines.filter { $0.hasPrefix("warning") }
        #expect(warnings.count == 1, "one warning when the failure starts, got \(warnings)")
        #expect(warnings.first?.contains("check the endpoint's body size limit") == true)
        #expect(logs.lines.filter { $0.contains("recovered") }.count == 1)
    }

    @Test("a failing endpoint is heard: one warning when it starts, none per retry, one line when it clears")
    func failureStateLogging() async throws {
        let logs = CapturedLogs()
        let endpoint = ScriptedEndpoint { _, index in (index < 6 ? .serviceUnavailable : .ok, [:]) }
        try await withReporter(endpoint, logger: logs.logger()) { reporter in
            try await reporter.export([envelope("f1")])
            try await waitUntil("f1") { endpoint.acceptedIDs == ["f1"] }
        }
        #expect(endpoint.requests.count == 7)
        let warnings = logs.lines.filter { $0.hasPrefix("warning") }
        #expect(warnings.count == 1 && warnings[0].contains("metrics endpoint failing") && warnings[0].contains("HTTP 503"), "\(warnings)")
        let cleared = logs.lines.filter { $0.contains("recovered") }
        #expect(cleared.count == 1 && cleared[0].contains("failures=6"), "\(cleared)")
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
