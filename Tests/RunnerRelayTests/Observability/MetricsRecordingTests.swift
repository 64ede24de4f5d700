import AsyncHTTPClient
import MetricsTestKit
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import RunnerRelay

/// An application that embeds the runner agent and the trickle server, bootstraps no global metrics and never
/// scrapes `/metrics`, still sees the relay's counters in the metrics backend it hands them.
@Suite("Metrics recorded without a scrape", .timeLimit(.minutes(1)))
struct MetricsRecordingTests {
    @Test("the runner agent and the trickle server record their counters into the application's factory every interval")
    func recordedWithoutScrape() async throws {
        let serverMetrics = TestMetrics()
        let agentMetrics = TestMetrics()
        var serverConfiguration = TrickleServer.Configuration()
        serverConfiguration.metricsRecording = MetricsRecording(interval: .milliseconds(50), factory: serverMetrics)
        try await withAgent(server: serverConfiguration) { configuration in
            configuration.writer.segmentWindow = .milliseconds(100)
            configuration.metricsRecording = MetricsRecording(interval: .milliseconds(50), factory: agentMetrics)
        } _: { (agent, api, trickle, client, server) async throws in
            server.createChannel(named: "m1-events")
            _ = try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"m1","events_url":"\#(trickle)/m1-events"}"#)
            let body = (0..<25).map { #"{"type":"metric","n":\#($0)}"# }.joined(separator: "\n")
            #expect(try await client.send(.POST, "\(api)/v1/sessions/m1/telemetry", body: body).status == 202)
            try await waitUntil("the agent's counters recorded") {
                // The 25 events and the relay's own relay_ready.
                agentMetrics.counterTotal(label: "trickle_relay_telemetry_emitted_total") == 26
                    && agentMetrics.counterTotal(label: "trickle_relay_telemetry_relayed_total") >= 25
            }
            try await waitUntil("the server's counters recorded") {
                serverMetrics.counterTotal(label: "trickle_server_segments_total") >= 1
                    && serverMetrics.counterTotal(label: "trickle_server_received_bytes_total") > 0
            }
            let emitted = try #require(agent.metricsSnapshot().samples.first { $0.name == "trickle_relay_telemetry_emitted_total" })
            #expect(emitted.value == 26)
        }
        // Recorded as increments: the recordings after, and the last one at shutdown, added nothing more.
        #expect(agentMetrics.counterTotal(label: "trickle_relay_telemetry_emitted_total") == 26)
    }
}
