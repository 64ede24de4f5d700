import ClientEgress
import Foundation
import NIOCore
import RdKafka
import Synchronization
import TrickleRelaySupport

/// The Kafka sink into librdkafka's mock cluster (3 brokers, in this process), ~1 KB envelopes: events/s through
/// the spool (append, read back, produce, acknowledge, delete), and without the spool the time from export to
/// the broker's acknowledgement (the delivery report), p50/p99.
enum KafkaBenchmark {
    static func run(arguments: [String]) async throws {
        let events = arguments.first.flatMap(Int.init) ?? 500_000
        let compression = arguments.dropFirst().first ?? "lz4"
        let records = (0..<events).map { n in
            TelemetryRecord(envelope: self.envelope(n), seq: n / 1_000, lineNumber: n % 1_000 + 1)
        }
        try await self.throughputThroughSpool(records, compression: compression)
        try await self.latency(count: 50_000, rate: 10_000)
    }

    static func envelope(_ n: Int, stamp: UInt64 = 0) -> ByteBuffer {
        let pad = String(repeating: "x", count: 820)
        return ByteBuffer(
            string: #"{"id":"6f1c2b7e-3d2a-4f0e-9a51-\#(String(format: "%012d", n))","type":"stream_trace","timestamp":"1763769600123","data":{"type":"stream_heartbeat","client_source":"scope","session_id":"sess-42","t":\#(stamp),"note":"\#(pad)"}}"#
        )
    }

    static func throughputThroughSpool(_ records: [TelemetryRecord], compression: String) async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        _ = cluster.createTopic("bench", partitions: 6, replicationFactor: 3)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kafka-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try Spool(configuration: .init(directory: directory, maximumBytes: 8 << 30), logger: logger)
        let kafka = try KafkaSink(
            configuration: .init(bootstrapServers: [cluster.bootstrapServers], topic: "bench", compression: compression),
            logger: logger
        )
        let sink = SpooledSink(spool: spool, downstream: kafka, logger: logger)
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sink.run() }
            for chunk in stride(from: 0, to: records.count, by: 500) {
                try await sink.export(records[chunk..<min(chunk + 500, records.count)])
            }
            try await sink.forceFlush()
            let elapsed = clock.now - start
            let stats = kafka.stats
            print(
                String(
                    format: "kafka through the spool (%@): %d events (~1 KB) in %.2f s = %.0f events/s, %.0f MB/s; acknowledged %d, retried %d, queue full %d times; spool left %d bytes",
                    compression, records.count, elapsed.seconds, Double(records.count) / elapsed.seconds,
                    Double(records.reduce(0) { $0 + $1.envelope.readableBytes }) / 1e6 / elapsed.seconds,
                    stats.acknowledged, stats.retried, stats.queueFull, spool.stats.bytes
                )
            )
            await sink.shutdown()
            try await group.waitForAll()
        }
    }

    /// `count` events at `rate`/s straight into the sink; the delivery report's time minus the export's.
    static func latency(count: Int, rate: Int) async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        _ = cluster.createTopic("latency", partitions: 6, replicationFactor: 3)
        let kafka = try KafkaSink(configuration: .init(bootstrapServers: [cluster.bootstrapServers], topic: "latency"), logger: logger)
        let exported = RelayMutex([UInt64](repeating: 0, count: count))
        let latencies = LatencyLog()
        let settledThrough = Atomic<Int>(0)
        kafka.onSettled { settled in
            let now = monotonicNanoseconds()
            let previous = settledThrough.exchange(settled, ordering: .relaxed)
            guard settled > previous else { return }
            let times = exported.withLock { Array($0[previous..<settled]) }
            latencies.append(times.map { now &- $0 })
        }
        let clock = ContinuousClock()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await kafka.run() }
            let began = clock.now
            for n in 0..<count {
                let due = began + .nanoseconds(Int64(n) * 1_000_000_000 / Int64(rate))
                if due > .now { try await Task.sleep(until: due) }
                exported.withLock { $0[n] = monotonicNanoseconds() }
                try await kafka.export(CollectionOfOne(TelemetryRecord(envelope: self.envelope(n), seq: 0, lineNumber: n + 1)))
            }
            try await kafka.forceFlush()
            await kafka.shutdown()
            try await group.waitForAll()
        }
        let sorted = latencies.values.sorted()
        func percentile(_ p: Double) -> Double { sorted.isEmpty ? .nan : Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6 }
        print(
            String(
                format: "kafka export → delivery report at %d events/s: %d reports, p50 %.2f ms, p99 %.2f ms, max %.2f ms (linger.ms 5, acks=all, 3 mock brokers)",
                rate, sorted.count, percentile(0.5), percentile(0.99), percentile(1.0)
            )
        )
    }
}
