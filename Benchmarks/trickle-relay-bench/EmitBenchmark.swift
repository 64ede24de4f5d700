import AsyncHTTPClient
import Foundation
import NIOCore
import RunnerRelay
import TrickleProtocol
import TrickleRelaySupport

/// Resident memory of this process, from /proc (Linux): (current, peak) in bytes.
func residentMemory() -> (current: Int, peak: Int) {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
    func field(_ name: String) -> Int {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }
    return (field("VmRSS:"), field("VmHWM:"))
}

let sampleEvent = ByteBuffer(
    string: #"{"type":"stream_heartbeat","mode":"cloud","frames_in":300,"frames_out":298,"fps_in":30.0,"fps_out":29.8,"elapsed_ms":10000,"vram_used_mb":31744}"#
)

func makeOfflineSink(client: HTTPClient) throws -> TrickleEventsSink {
    // No drain runs: the queue fills, and every further emit evicts the oldest (the overflow path).
    let writer = JSONLWriter(url: try TrickleChannelURL("http://127.0.0.1:9/unused"), httpClient: client, logger: logger)
    return TrickleEventsSink(writer: writer, configuration: .init(identity: .init(sessionID: "bench")), logger: logger)
}

func benchmarkEmit() async throws {
    try await HTTPClient.withHTTPClient { client in
        let sink = try makeOfflineSink(client: client)
        let count = 10_000_000
        let single = ContinuousClock().measure {
            for _ in 0..<count { sink.emit(sampleEvent) }
        }
        print(String(format: "emit, 1 thread: %.2f M emits/s (%d emits, queue full: every emit evicts)", Double(count) / single.seconds / 1e6, count))

        let threads = 4
        let perThread = 2_500_000
        let multi = ContinuousClock().measure {
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                for _ in 0..<perThread { sink.emit(sampleEvent) }
            }
        }
        print(String(format: "emit, %d threads: %.2f M emits/s in total (on %d cores)", threads, Double(threads * perThread) / multi.seconds / 1e6, ProcessInfo.processInfo.activeProcessorCount))

        var samples = [Int64](repeating: 0, count: 1_000_000)
        let clock = ContinuousClock()
        for index in samples.indices {
            let start = clock.now
            sink.emit(sampleEvent)
            let elapsed = clock.now - start
            samples[index] = elapsed.components.attoseconds / 1_000_000_000
        }
        samples.sort()
        print(
            String(
                format: "emit latency: p50 %.0f ns, p99 %.0f ns, p99.9 %.0f ns, max %.1f µs (1M samples, clock overhead included)",
                Double(samples[samples.count / 2]), Double(samples[samples.count * 99 / 100]),
                Double(samples[samples.count * 999 / 1000]), Double(samples.last!) / 1000
            )
        )
    }
}

/// Floods a live session at `factor` × its drain rate for `seconds`, sampling resident memory.
func benchmarkFlood(seconds: Int, factor: Int) async throws {
    let server = TrickleServer(configuration: .init(port: 0), logger: logger)
    try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try await server.waitUntilListening()
            server.createChannel(named: "flood")
            let url = try TrickleChannelURL("http://127.0.0.1:\(port)/flood")
            let byteBound = 16 * 1024 * 1024
            let relay = SessionRelay(
                configuration: .init(eventsURL: url, sink: .init(identity: .init(sessionID: "flood"), maximumQueuedBytes: byteBound)),
                httpClient: client,
                logger: logger
            )
            let reader = JSONLReader(url: url, httpClient: client, logger: logger)
            let read = Counter()
            group.addTask { try await relay.run() }
            group.addTask { _ = try await reader.run { item in if case .line = item { read.add(1) } } }

            // Measure the drain rate first: 2 s of emitting as fast as the queue allows.
            let before = relay.sink.stats.written
            let measureStart = ContinuousClock.now
            while ContinuousClock.now - measureStart < .seconds(2) {
                for _ in 0..<1000 { relay.sink.emit(sampleEvent) }
                await Task.yield()
            }
            let drainRate = Double(relay.sink.stats.written - before) / 2
            let floodRate = drainRate * Double(factor)
            print(String(format: "drain rate (stamp + scrub + frame + publish): %.0f events/s; flooding at %.0f events/s for %d s", drainRate, floodRate, seconds))
            let baseline = residentMemory().current
            var peak = baseline
            let start = ContinuousClock.now
            var emitted = 0.0
            while ContinuousClock.now - start < .seconds(seconds) {
                let target = floodRate * (ContinuousClock.now - start).seconds
                while emitted < target {
                    relay.sink.emit(sampleEvent)
                    emitted += 1
                }
                peak = max(peak, residentMemory().current)
                try await Task.sleep(for: .milliseconds(5))
            }
            let stats = relay.sink.stats
            print(
                String(
                    format: "flood: RSS baseline %.1f MiB, peak %.1f MiB (+%.1f MiB; bound %d MiB + 32 MiB); emitted %d, relayed %d, dropped %d, queue %d events / %.1f MiB",
                    Double(baseline) / 1048576, Double(peak) / 1048576, Double(peak - baseline) / 1048576, byteBound / 1048576,
                    stats.emitted, stats.relayed, stats.dropped, stats.queuedEvents, Double(stats.queuedBytes) / 1048576
                )
            )
            relay.finish()
            try await waitForRelay(relay)
            group.cancelAll()
        }
    }
}

private func waitForRelay(_ relay: SessionRelay) async throws {
    while relay.sink.stats.queuedEvents > 0 { try await Task.sleep(for: .milliseconds(10)) }
}
