import AsyncHTTPClient
import ClientEgress
import Foundation
import NIOCore
import RelayTracing
import RunnerRelay
import ServiceLifecycle
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// Monotonic nanoseconds, shared by the emitting and the receiving side of this process.
func monotonicNanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// A `FileSink` that also records, per envelope, the time from `emit` (the `"t":` field the benchmark put in
/// the event) to the moment the file write returned.
final class TimedFileSink: EgressSink {
    private let file: FileSink
    private let state = RelayMutex((latencies: [UInt64](), delivered: 0))

    init(path: String) throws {
        self.file = try FileSink(path: path)
    }

    var delivered: Int { self.state.withLock { $0.delivered } }
    func takeLatencies() -> [UInt64] { self.state.withLock { $0.latencies } }

    func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        try await self.file.export(records)
        let now = monotonicNanoseconds()
        let latencies = records.compactMap { record -> UInt64? in
            guard let sent = Self.sentAt(record.envelope) else { return nil }
            return now &- sent
        }
        self.state.withLock { state in
            state.delivered += records.count
            state.latencies.append(contentsOf: latencies)
        }
    }

    /// The digits after `"t":`.
    static func sentAt(_ envelope: ByteBuffer) -> UInt64? {
        envelope.withUnsafeReadableBytes { bytes -> UInt64? in
            let key: [UInt8] = Array(#""t":"#.utf8)
            guard bytes.count > key.count else { return nil }
            var index = 0
            outer: while index + key.count < bytes.count {
                for offset in 0..<key.count where bytes[index + offset] != key[offset] {
                    index += 1
                    continue outer
                }
                var value: UInt64 = 0
                var position = index + key.count
                while position < bytes.count, bytes[position] >= 48, bytes[position] <= 57 {
                    value = value * 10 + UInt64(bytes[position] - 48)
                    position += 1
                }
                return value
            }
            return nil
        }
    }

    func forceFlush() async throws { try await self.file.forceFlush() }
    func shutdown() async { await self.file.shutdown() }
}

/// Runner `emit` → embedded server → client `FileSink`, at `rate` events/s for `seconds`.
func benchmarkLatency(rate: Int, seconds: Int) async throws {
    let server = TrickleServer(configuration: .init(port: 0), logger: logger)
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("latency-\(rate)-\(UUID().uuidString).jsonl").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
        // The server stops gracefully at the end: cancelling it under live connections trips NIO's
        // "NIOAsyncWriter deinited without finish()" precondition.
        // With tracing on, spans go to a loopback port nobody listens on: built, batched and exported (refused).
        // The exporter runs first in the one group, so it is shut down last (after the pipeline's last spans).
        let tracing = try ObservabilityModes.tracer(exportingTo: 9)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let tracing { services.append(.init(service: tracing.service)) }
        services.append(.init(service: server))
        let serverGroup = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { outer in
            outer.addTask { try await serverGroup.run() }
            try await measureLatency(server: server, client: client, tracing: tracing, path: path, rate: rate, seconds: seconds)
            await serverGroup.triggerGracefulShutdown()
            try await outer.waitForAll()
        }
    }
}

private func measureLatency(server: TrickleServer, client: HTTPClient, tracing: RelayTracing?, path: String, rate: Int, seconds: Int) async throws {
    do {
        try await withThrowingTaskGroup(of: Void.self) { group in
            let port = try await server.waitUntilListening()
            server.createChannel(named: "latency")
            let url = try TrickleChannelURL("http://127.0.0.1:\(port)/latency")
            var sinkConfiguration = TrickleEventsSink.Configuration(identity: .init(sessionID: "latency"), maximumQueuedEvents: 65_536)
            sinkConfiguration.tracer = tracing?.tracer
            let relay = SessionRelay(
                configuration: .init(eventsURL: url, sink: sinkConfiguration),
                httpClient: client,
                logger: logger
            )
            let sink = try TimedFileSink(path: path)
            let daemon = ClientDaemon(eventsURL: url, httpClient: client, reader: .init(subscriber: .init(start: .seq(0))), sink: sink, logger: logger)
            group.addTask { try await daemon.run() }
            group.addTask { try await relay.run() }

            // Warm up connections (not measured).
            relay.sink.emit(#"{"type":"warmup"}"#)
            while sink.delivered < 1 { try await Task.sleep(for: .milliseconds(1)) }

            let start = ContinuousClock.now
            var emitted = 0
            let total = rate * seconds
            while emitted < total {
                let due = min(total, Int(Double(rate) * (ContinuousClock.now - start).seconds) + 1)
                while emitted < due {
                    relay.sink.emit(#"{"type":"bench","n":\#(emitted),"t":\#(monotonicNanoseconds())}"#)
                    emitted += 1
                }
                // Sleep until the next event is due (at least 0.5 ms): no busier than the load asks for.
                let next = Double(emitted) / Double(rate)
                let wait = max(next - (ContinuousClock.now - start).seconds, 0.0005)
                try await Task.sleep(for: .microseconds(Int64(wait * 1_000_000)))
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while sink.delivered < total + 1, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            let elapsed = ContinuousClock.now - start
            var latencies = sink.takeLatencies()
            latencies.sort()
            func percentile(_ p: Double) -> Double {
                latencies.isEmpty ? 0 : Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1e6
            }
            let stats = relay.sink.stats
            print(
                String(
                    format: "latency at %d events/s for %d s: delivered %d of %d (lost %d, dropped by the sink %d), p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.2f ms; %.1f s wall, %d segments",
                    rate, seconds, latencies.count, total, total - latencies.count, stats.dropped, percentile(0.5), percentile(0.99),
                    percentile(0.999), Double(latencies.last ?? 0) / 1e6, elapsed.seconds, relay.writer.publisher.stats.segments
                )
            )
            relay.finish()
            try await group.waitForAll()  // the relay closes the channel; the client then ends too
        }
    }
}
