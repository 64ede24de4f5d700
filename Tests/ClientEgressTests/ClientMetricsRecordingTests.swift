import AsyncHTTPClient
import ClientEgress
import MetricsTestKit
import NIOCore
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// An application embedding the client pipeline, with no global metrics factory and no `/metrics` endpoint, still
/// sees the client's counters in the backend it hands them.
@Suite("Client metrics recorded without a scrape", .timeLimit(.minutes(1)))
struct ClientMetricsRecordingTests {
    @Test("ClientApplication records its counters into the application's factory every interval and when it ends")
    func recordedWithoutScrape() async throws {
        let metrics = TestMetrics()
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "rec-events")
            let url = try TrickleChannelURL("\(base)/rec-events")
            var configuration = ClientApplication.Configuration(
                sink: .null,
                subscriptions: [try ChannelSubscription(eventsURL: url, start: .seq(0))]
            )
            configuration.metricsRecording = MetricsRecording(interval: .milliseconds(50), factory: metrics)
            let application = try ClientApplication(configuration: configuration, httpClient: client, logger: quietLogger)
            let writer = JSONLWriter(url: url, httpClient: client, logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await application.run() }
                group.addTask { try await writer.run() }
                for n in 1...30 {
                    try await writer.write(line: ByteBuffer(string: #"{"type":"telemetry","event":{"id":"r-\#(n)","type":"stream_trace","data":{"type":"metric"}}}"#))
                }
                await writer.flush()
                // Recorded on the interval, while the application still runs.
                try await waitUntil("the client's counters recorded") {
                    metrics.counterTotal(label: "trickle_relay_client_telemetry_total") == 30
                }
                try await writer.close()  // the channel ends; so does the application (its only subscription)
                try await group.waitForAll()
            }
            // The final recording leaves the backend where the snapshot is: no double counting.
            let lines = try #require(application.metricsSnapshot().samples.first { $0.name == "trickle_relay_client_lines_total" })
            #expect(metrics.counterTotal(label: "trickle_relay_client_lines_total") == Int64(lines.value))
            #expect(metrics.counterTotal(label: "trickle_relay_client_telemetry_total") == 30)
        }
    }
}
