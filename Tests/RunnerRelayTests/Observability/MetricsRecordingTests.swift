import AsyncHTTPClient
import MetricsTestKit
import NIOHTTP1
import ServiceLifecycleTestKit
import Testing
import TrickleProtocol
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
        try await withTrickleServer(serverConfiguration) { (server, trickle, client) async throws in
            server.createChannel(named: "m1-events")
            var configuration = RunnerAgent.Configuration(port: 0)
            configuration.sinkDefaults.isTelemetryEnabled = true
            configuration.writer.segmentWindow = .milliseconds(100)
            configuration.metricsRecording = MetricsRecording(interval: .milliseconds(50), factory: agentMetrics)
            let agent = try RunnerAgent(configuration: configuration, httpClient: client, logger: quietLogger)
            try await testGracefulShutdown { trigger in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await agent.run() }
                    let api = "http://127.0.0.1:\(try await agent.waitUntilListening())"
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
                    trigger.triggerGracefulShutdown()
                    try await group.waitForAll()
                }
            }
            // Recorded as increments: a later recording of the same totals adds nothing.
            let emitted = try #require(agent.metricsSnapshot().samples.first { $0.name == "trickle_relay_telemetry_emitted_total" })
            #expect(agentMetrics.counterTotal(label: "trickle_relay_telemetry_emitted_total") == Int64(emitted.value))
        }
    }
}
