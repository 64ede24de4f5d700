import ClientEgress
import Foundation
import NIOCore
import RdKafka
import RelayTracing
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

private func envelope(_ n: Int, session: Int = 0) -> ByteBuffer {
    // Key order, number spelling and an escape that must survive byte for byte.
    ByteBuffer(string: #"{"id":"k-\#(session)-\#(n)","type":"stream_trace","timestamp":"1763769600\#(n)","data":{"type":"metric","n":\#(n),"v":1.50e3,"s":"caf\u00e9"}}"#)
}

/// An envelope whose `data` carries `traceparent`.
private func traced(_ n: Int, _ traceparent: String) -> TelemetryRecord {
    let text = #"{"id":"t-\#(n)","type":"stream_trace","timestamp":"1763769600000","data":{"type":"metric","traceparent":"\#(traceparent)"}}"#
    return TelemetryRecord(envelope: ByteBuffer(string: text), seq: 0, lineNumber: n + 1)
}

@Suite(
    "Kafka sink against librdkafka's mock cluster",
    .enabled(if: kafkaTestsEnabled, "needs librdkafka1 and kcat (apt-get install librdkafka1 kcat; CI installs them); not under ThreadSanitizer (librdkafka's C11 threads escape its interceptors)"),
    .timeLimit(.minutes(2))
)
struct KafkaSinkTests {
    /// Runs a sink on a fresh mock cluster, exports `records`, waits until every one is acknowledged.
    private func deliver(
        _ records: [TelemetryRecord],
        topic: String,
        prepare: (KafkaMockCluster) -> Void = { _ in }
    ) async throws -> (cluster: KafkaMockCluster, stats: KafkaSink.Stats, settled: Int) {
        let cluster = try KafkaMockCluster(brokers: 3)
        #expect(cluster.createTopic(topic, partitions: 3, replicationFactor: 3) == 0)
        prepare(cluster)
        let sink = try KafkaSink(
            configuration: .init(bootstrapServers: [cluster.bootstrapServers], topic: topic, properties: [("retry.backoff.ms", "20")]),
            logger: quietLogger
        )
        let settled = Recorder<Int>()
        sink.onSettled { settled.append($0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sink.run() }
            for chunk in stride(from: 0, to: records.count, by: 100) {
                try await sink.export(records[chunk..<min(chunk + 100, records.count)])
            }
            try await settled.wait(timeout: .seconds(60), "every record acknowledged") { $0.last == records.count }
            await sink.shutdown()
            try await group.waitForAll()
        }
        return (cluster, sink.stats, settled.values.last ?? 0)
    }

    @Test("every envelope lands once on the topic, value byte-identical, key = id (read back with kcat)")
    func deliversByteExact() async throws {
        let records = (0..<1_000).map { TelemetryRecord(envelope: envelope($0), seq: 0, lineNumber: $0 + 1) }
        let (cluster, stats, settled) = try await self.deliver(records, topic: "relay-exact")
        #expect(settled == 1_000)
        #expect(stats.acknowledged == 1_000 && stats.inFlight == 0 && stats.retried == 0, "\(stats)")
        let messages = try await readTopic("relay-exact", bootstrap: cluster.bootstrapServers, expecting: 1_000)
        #expect(messages.count == 1_000)
        let expected = Dictionary(uniqueKeysWithValues: records.map { ("k-0-\($0.lineNumber - 1)", String(buffer: $0.envelope)) })
        for message in messages {
            #expect(expected[message.key] == message.value, "key \(message.key)")
        }
        #expect(Set(messages.map(\.key)).count == 1_000)
    }

    @Test("the cluster fails produce requests for a while: the producer retries, every event ends on the topic once")
    func survivesProduceErrors() async throws {
        let records = (0..<2_000).map { TelemetryRecord(envelope: envelope($0, session: 1), seq: 0, lineNumber: $0 + 1) }
        let (cluster, stats, _) = try await self.deliver(records, topic: "relay-errors") { cluster in
            cluster.failProduceRequests(
                Array(repeating: KafkaErrorCode.notEnoughReplicas, count: 10) + Array(repeating: KafkaErrorCode.requestTimedOut, count: 5)
            )
        }
        #expect(stats.acknowledged == 2_000, "\(stats)")
        let messages = try await readTopic("relay-errors", bootstrap: cluster.bootstrapServers, expecting: 2_000)
        let keys = messages.map(\.key)
        #expect(Set(keys).count == 2_000, "distinct ids")
        #expect(keys.count == 2_000, "duplicates: \(keys.count - Set(keys).count) (the idempotent producer should leave none)")
    }

    @Test("each exported batch is a delivery span, a child of its events' traceparent (or linking several), ended by the brokers' acknowledgements")
    func deliverySpans() async throws {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        let traces = OTLPReceiver()
        let cluster = try KafkaMockCluster(brokers: 1)
        #expect(cluster.createTopic("relay-traced", partitions: 1, replicationFactor: 1) == 0)
        try await traces.run { tracesBase in
            let configuration = RelayTracingConfiguration(
                endpoint: try OTLPEndpoint(parsing: tracesBase, signalPath: "/v1/traces", what: "test"),
                serviceName: "trickle-relay-client",
                usesJSON: true,
                exportInterval: .milliseconds(50)
            )
            let tracing = try RelayTracing(configuration: configuration, logger: quietLogger)
            try await withTracingExporter(tracing, logger: quietLogger) {
                let sink = try KafkaSink(
                    configuration: .init(bootstrapServers: [cluster.bootstrapServers], topic: "relay-traced"),
                    logger: quietLogger,
                    tracing: DeliveryTracing(tracer: tracing.tracer)
                )
                let settled = Recorder<Int>()
                sink.onSettled { settled.append($0) }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await sink.run() }
                    try await sink.export((0..<50).map { traced($0, parent) })
                    try await sink.export((50..<60).map { traced($0, $0.isMultiple(of: 2) ? parent : other) })
                    try await settled.wait(timeout: .seconds(60), "every record acknowledged") { $0.last == 60 }
                    await sink.shutdown()
                    try await group.waitForAll()
                }
            }
            try await waitUntil("the delivery spans") { traces.spans.filter { $0.name == "trickle_relay.kafka.deliver" }.count >= 2 }
        }
        let deliveries = traces.spans.filter { $0.name == "trickle_relay.kafka.deliver" }
        #expect(deliveries.count == 2)
        let child = try #require(deliveries.first { $0.parentSpanID == "00f067aa0ba902b7" })
        #expect(child.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        let linking = try #require(deliveries.first { $0.links.count == 2 })
        #expect(Set(linking.links.map(\.spanID)) == ["00f067aa0ba902b7", "b7ad6b7169203331"])
    }

    @Test("librdkafka's refusals name the property, never its value")
    func refusedProperty() {
        #expect {
            try KafkaSink(configuration: .init(bootstrapServers: ["127.0.0.1:9"], properties: [("sasl.password.nonsense", "hunter2")]), logger: quietLogger)
        } throws: { error in
            "\(error)".contains("sasl.password.nonsense") && !"\(error)".contains("hunter2")
        }
    }
}
