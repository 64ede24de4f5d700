import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Issue #13 across real processes: a `traceparent` handed to the runner's ingest API travels inside the
/// envelopes, the client's OTLP log sink delivers every envelope through its spool while the receiver answers
/// 503 for a while, and both relay processes export their own spans to the relay's traces endpoint.
@Suite("Trace context and OTLP export across serve, runner and client", .timeLimit(.minutes(3)), .serialized)
struct ObservabilityProcessTests {
    @Test("header values (tokens) of the traces exporter never reach a log line, even at trace level")
    func headersNeverLogged() async throws {
        let traces = OTLPReceiver()
        try await traces.run { tracesBase in
            let (client, _) = try await FaultChild.startedOnUnusedPort(
                environment: [
                    "TRICKLE_RELAY_OTLP_TRACES_ENDPOINT": tracesBase,
                    "TRICKLE_RELAY_OTLP_TRACES_HEADERS": "x-token=s3cr3t-relay",
                    // swift-otel applies (and logs) the standard variables too: their values must be redacted.
                    "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Bearer%20s3cr3t-otel",
                    "TRICKLE_RELAY_OTLP_LOGS_HEADERS": "authorization=Bearer%20s3cr3t-logs",
                ]
            ) { port in
                ["client", "--events-url", "http://127.0.0.1:9/none-events", "--sink", "null", "--listen", "127.0.0.1:\(port)", "--log-level", "trace", "--wait-for-channel", "60"]
            }
            defer { client.stopIfRunning() }
            try await client.lines.wait("the tracing line") { $0.contains { $0.contains("relay tracing on") } }
            client.signal(SIGTERM)
            #expect(await client.exited.wait() == 0)
            let logged = client.lines.values.joined(separator: "\n")
            #expect(!logged.contains("s3cr3t"), "\(logged)")
        }
    }

    @Test("ingest traceparent → envelope data → the client's delivery span is its child; every envelope a log record")
    func traceAcrossTheRelay() async throws {
        let parentSpan = "00f067aa0ba902b7"
        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
        let traceparent = "00-\(traceID)-\(parentSpan)-01"
        let logs = OTLPReceiver { _, index in index < 2 ? .serviceUnavailable : .ok }
        let traces = OTLPReceiver()
        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("otlp-spool-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: spool) }
        try await traces.run { tracesBase in
            try await logs.run { logsBase in
                let tracing = [
                    "TRICKLE_RELAY_OTLP_TRACES_ENDPOINT": tracesBase,
                    "TRICKLE_RELAY_OTLP_TRACES_PROTOCOL": "http/json",
                ]
                let (serve, servePort) = try await FaultChild.startedOnUnusedPort { port in
                    ["serve", "--port", "\(port)", "--log-level", "error"]
                }
                defer { serve.stopIfRunning() }
                let (runner, runnerPort) = try await FaultChild.startedOnUnusedPort(environment: tracing) { port in
                    ["runner", "--telemetry", "on", "--listen", "127.0.0.1:\(port)", "--segment-window", "1", "--log-level", "error"]
                }
                defer { runner.stopIfRunning() }
                let channel = "http://127.0.0.1:\(servePort)/otel-s1-events"
                let (client, clientPort) = try await FaultChild.startedOnUnusedPort(environment: tracing) { port in
                    [
                        "client", "--events-url", channel, "--start", "0", "--wait-for-channel", "60", "--sink", "otlp:\(logsBase)",
                        "--spool-dir", spool.path, "--listen", "127.0.0.1:\(port)", "--quiet", "--log-level", "error",
                    ]
                }
                defer { client.stopIfRunning() }
                try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { http in
                    let started = try await http.send(.POST, "http://127.0.0.1:\(runnerPort)/v1/sessions", body: #"{"session_id":"s1","events_url":"\#(channel)"}"#)
                    #expect(started.status == 201, "\(started.body)")
                    let body = (0..<50).map { #"{"type":"metric","n":\#($0)}"# }.joined(separator: "\n")
                    let bad = try await http.send(
                        .POST, "http://127.0.0.1:\(runnerPort)/v1/sessions/s1/telemetry", body: #"{"type":"metric","n":-1}"#,
                        headers: ["traceparent": "00-\(traceID.uppercased())-\(parentSpan)-01"]
                    )
                    #expect(bad.status == 202)
                    let accepted = try await http.send(
                        .POST, "http://127.0.0.1:\(runnerPort)/v1/sessions/s1/telemetry", body: body,
                        headers: ["traceparent": traceparent, "tracestate": "vendor=a1"]
                    )
                    #expect(accepted.status == 202, "\(accepted.body)")
                    try await waitUntil(timeout: .seconds(60), "51 metric log records") {
                        logs.logRecords.filter { $0.attributes["data.type"] == "metric" }.count >= 51
                    }
                    let metrics = try await http.send(.GET, "http://127.0.0.1:\(runnerPort)/metrics")
                    #expect(metrics.body.contains("trickle_relay_trace_context_invalid_total 1"), "\(metrics.body)")
                    // Each process's /metrics comes from swift-prometheus, with the latency histograms.
                    #expect(metrics.body.contains("# TYPE trickle_relay_emit_to_relay_seconds histogram"))
                    #expect(metrics.body.contains(#"trickle_relay_emit_to_relay_seconds_bucket{le="0.001"}"#))
                    // The receiver has the records before the client has read its answer (and recorded the delivery):
                    // wait for the client's own count, not the receiver's.
                    try await waitUntil(timeout: .seconds(30), "the client to record its deliveries") {
                        let text = (try? await http.send(.GET, "http://127.0.0.1:\(clientPort)/metrics").body) ?? ""
                        return text.contains("# TYPE trickle_relay_client_delivery_seconds histogram")
                            && !text.contains("trickle_relay_client_delivery_seconds_count 0\n")
                    }
                    let clientMetrics = try await http.send(.GET, "http://127.0.0.1:\(clientPort)/metrics").body
                    for name in ["trickle_relay_client_dispatch_to_sink_seconds", "trickle_relay_client_delivery_seconds"] {
                        #expect(clientMetrics.contains("# TYPE \(name) histogram"), "\(clientMetrics)")
                        #expect(!clientMetrics.contains("\(name)_count 0\n"), "\(name)")
                    }
                    #expect(clientMetrics.contains("trickle_relay_client_metrics_retries_total 2"), "\(clientMetrics)")
                    let serverMetrics = try await http.send(.GET, "http://127.0.0.1:\(servePort)/metrics").body
                    #expect(serverMetrics.contains("# TYPE trickle_server_channels gauge"), "\(serverMetrics)")
                }
                // SIGTERM: each process shuts its exporter down last, so the spans it still holds go out.
                client.signal(SIGTERM)
                runner.signal(SIGTERM)
                let clientStatus = await client.exited.wait()
                #expect(clientStatus == 0, "\(client.lines.values.suffix(10))")
                let runnerStatus = await runner.exited.wait()
                #expect(runnerStatus == 0, "\(runner.lines.values.suffix(10))")
            }
        }
        let records = logs.logRecords.filter { $0.attributes["data.type"] == "metric" }
        let numbers = records.compactMap { record -> Int? in
            let object = (try? JSONSerialization.jsonObject(with: Data(record.body.utf8))) as? [String: Any]
            return (object?["data"] as? [String: Any])?["n"] as? Int
        }
        #expect(Set(numbers) == Set(-1..<50))
        let traced = records.filter { $0.attributes["traceparent"] != nil }
        #expect(traced.count == 50)  // the upper-case traceparent was dropped, never forwarded
        #expect(traced.allSatisfy { $0.attributes["traceparent"] == traceparent && $0.attributes["tracestate"] == "vendor=a1" && $0.traceID == traceID })
        #expect(logs.requests.prefix(2).allSatisfy { $0.status == .serviceUnavailable })
        let spans = traces.spans
        let deliveries = spans.filter { $0.name == "trickle_relay.otlp_logs.deliver" && $0.traceID == traceID }
        #expect(!deliveries.isEmpty, "\(spans.map(\.name))")
        #expect(deliveries.contains { $0.parentSpanID == parentSpan && $0.serviceName == "trickle-relay-client" })
        #expect(spans.contains { $0.name == "trickle_relay.segment.publish" && $0.serviceName == "trickle-relay-runner" })
        for name in ["trickle_relay.segment.read", "trickle_relay.dispatch", "trickle_relay.spool.write"] {
            #expect(spans.contains { $0.name == name && $0.serviceName == "trickle-relay-client" }, "\(name): \(Set(spans.map(\.name)))")
        }
    }
}
