import AsyncHTTPClient
import Foundation
import NIOCore
import RdKafka
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Issue #12: the client process publishing to Kafka (librdkafka's mock cluster, held by this test process)
/// through its spool, killed mid-delivery and restarted.
@Suite(
    "trickle-relay client into Kafka as a process",
    .enabled(if: kafkaTestsEnabled, "needs librdkafka1 and kcat (apt-get install librdkafka1 kcat; CI installs them); not under ThreadSanitizer (librdkafka's C11 threads escape its interceptors)"),
    .timeLimit(.minutes(3))
)
struct KafkaProcessTests {
    @Test("kill -9 during delivery to Kafka, restart on the same spool: every event that reached the spool is on the topic")
    func crashAndResume() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        #expect(cluster.createTopic("relay-crash", partitions: 3, replicationFactor: 3) == 0)
        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("kafka-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: spool) }
        try await withTrickleServer(.init(ringSize: 16, deletedChannelGracePeriod: .seconds(60))) { (server, base, client) async throws in
            server.createChannel(named: "kafka-events")
            let eventsURL = "\(base)/kafka-events"
            let writer = JSONLWriter(url: try TrickleChannelURL(eventsURL), httpClient: client, configuration: .init(segmentWindow: .milliseconds(300)), logger: quietLogger)
            func startClient() throws -> FaultChild {
                try FaultChild([
                    "client", "--events-url", eventsURL, "--sink", "kafka:\(cluster.bootstrapServers)", "--kafka-topic", "relay-crash",
                    "--spool-dir", spool, "--start", "0", "--listen", "off", "--quiet",
                ])
            }
            func line(_ n: Int) -> ByteBuffer {
                ByteBuffer(string: #"{"type":"telemetry","event":{"id":"kc-\#(n)","type":"stream_trace","timestamp":"1","data":{"type":"metric","n":\#(n)}}}"#)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                let first = try startClient()
                for n in 0..<2_000 {
                    try await writer.write(line: line(n))
                    if n % 400 == 399 { await writer.flush() }
                }
                // Some of it delivered, then the client dies without any chance to flush.
                try await waitUntil(timeout: .seconds(60), every: .milliseconds(100), "a first part on the topic") {
                    try await readTopic("relay-crash", bootstrap: cluster.bootstrapServers, expecting: 1).count >= 300
                }
                first.signal(SIGKILL)
                _ = await first.exited.wait()
                for n in 2_000..<3_000 { try await writer.write(line: line(n)) }
                let second = try startClient()
                try await writer.close()
                #expect(await second.exited.wait() == 0, "\(second.lines.values.suffix(5))")
                try await group.waitForAll()
                let summary = second.lines.values.last { $0.contains("client ended") } ?? ""
                #expect(summary.contains("kafka: acknowledged"), "\(summary)")
            }
            let messages = try await readTopic("relay-crash", bootstrap: cluster.bootstrapServers, expecting: 3_000)
            let keys = messages.map(\.key)
            let missing = (0..<3_000).filter { !Set(keys).contains("kc-\($0)") }
            #expect(missing.count == 0, "missing \(missing.count), e.g. \(missing.prefix(5))")
            print("kafka crash test: \(Set(keys).count) distinct of 3000, \(keys.count - Set(keys).count) duplicates after a kill -9")
        }
    }
}
