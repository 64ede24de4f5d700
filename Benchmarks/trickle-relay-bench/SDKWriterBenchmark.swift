import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// The embedded server under the official SDK's write pattern: one streaming POST per segment, one HTTP chunk per
/// ~300-byte line, 10 s segments, a reader following the channel. Prints, per rate, the server's CPU time per event
/// (from `/proc/<pid>/stat` of a separate server process), the reader's p50/p99 from write to read, and loss.
///
/// `sdkwriter [rates] [seconds] [url pid]`: without a URL it starts `trickle-relay serve` from this binary's
/// folder; with `URL PID` it measures any trickle server already running (another implementation, for a
/// side-by-side).
struct SDKWriterBenchmark {
    var rates: [Int]
    var seconds: Int
    var serverURL: String
    var serverPID: Int32

    static func run(arguments: [String]) async throws {
        let rates = arguments.first.map { $0.split(separator: ",").compactMap { Int($0) } } ?? [1_000, 5_000, 20_000]
        let seconds = arguments.dropFirst().first.flatMap(Int.init) ?? 10
        let server = try await BenchServer.startOrAttach(arguments: Array(arguments.dropFirst(2)))
        defer { server.stop() }
        let benchmark = SDKWriterBenchmark(rates: rates, seconds: seconds, serverURL: server.url, serverPID: server.pid)
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            for rate in benchmark.rates {
                try await benchmark.measure(rate: rate, client: client)
            }
        }
    }

    func serverCPU() -> Duration { BenchServer.cpuTime(pid: self.serverPID) }

    func measure(rate: Int, client: HTTPClient) async throws {
        let channel = "\(self.serverURL)/sdk-\(rate)-\(UInt32.random(in: 0...UInt32.max))"
        var create = HTTPClientRequest(url: channel)
        create.method = .POST
        create.headers.add(name: "Expect-Content", value: "application/jsonl")
        _ = try await client.execute(create, timeout: .seconds(5)).body.collect(upTo: 1024)

        let total = rate * self.seconds
        let segmentLines = rate * 10  // 10 s segments
        let received = Counter()
        let latencies = LatencyLog()
        let start = monotonicNanoseconds()
        let cpuBefore = self.serverCPU()
        let clock = ContinuousClock()
        let began = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await Self.read(channel: channel, lines: total, client: client, received: received, latencies: latencies)
            }
            var sent = 0
            var seq = 0
            while sent < total {
                let count = min(segmentLines, total - sent)
                try await Self.post(channel: channel, seq: seq, lines: sent..<(sent + count), rate: rate, began: began, client: client)
                sent += count
                seq += 1
            }
            // The reader has until 5 s after the last write.
            let deadline = clock.now + .seconds(5)
            while received.value < total, clock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            group.cancelAll()
        }
        let elapsed = clock.now - began
        let cpu = self.serverCPU() - cpuBefore
        var sorted = latencies.values
        sorted.sort()
        func percentile(_ p: Double) -> Double {
            sorted.isEmpty ? .nan : Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6
        }
        _ = start
        print(
            String(
                format: "sdk-writer %6d lines/s: %d of %d read (loss %d) in %.1f s; server CPU %.2f s = %.1f µs/event; read p50 %.2f ms p99 %.2f ms",
                rate, received.value, total, total - received.value, elapsed.seconds, cpu.seconds,
                cpu.seconds * 1e6 / Double(max(total, 1)), percentile(0.5), percentile(0.99)
            )
        )
    }

    /// One segment: a streaming POST with one chunk per line, paced at `rate`.
    static func post(channel: String, seq: Int, lines: Range<Int>, rate: Int, began: ContinuousClock.Instant, client: HTTPClient) async throws {
        let padding = String(repeating: "p", count: 200)
        try await self.postPaced(channel: channel, seq: seq, lines: lines, rate: rate, began: began, client: client) { n in
            #"{"type":"telemetry","event":{"id":"sdk-\#(n)","type":"stream_trace","data":{"type":"metric","n":\#(n),"t":\#(monotonicNanoseconds()),"pad":"\#(padding)"}}}"#
        }
    }

    /// Segment `seq` as one streaming POST, one chunk per line (`line(n)` and a newline), line n due at n / `rate`
    /// seconds after `began`: the SDK writer's pattern, shared by the `sdkwriter` and `fleet` benchmarks.
    static func postPaced(
        channel: String,
        seq: Int,
        lines: Range<Int>,
        rate: Int,
        began: ContinuousClock.Instant,
        client: HTTPClient,
        line: (Int) -> String
    ) async throws {
        let (body, continuation) = AsyncStream<ByteBuffer>.makeStream()
        var request = HTTPClientRequest(url: "\(channel)/\(seq)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/jsonl")
        request.body = .stream(body, length: .unknown)
        async let response = client.execute(request, deadline: .now() + .seconds(120))
        for n in lines {
            let due = began + .nanoseconds(Int64(n) * 1_000_000_000 / Int64(rate))
            if due > .now { try await Task.sleep(until: due) }
            continuation.yield(ByteBuffer(string: line(n) + "\n"))
        }
        continuation.finish()
        _ = try await response.body.collect(upTo: 1024)
    }

    /// Follows the channel from seq 0, noting each line's latency from its `"t":` stamp.
    static func read(channel: String, lines total: Int, client: HTTPClient, received: Counter, latencies: LatencyLog) async throws {
        var seq = 0
        var partial = ByteBuffer()
        while received.value < total, !Task.isCancelled {
            let request = HTTPClientRequest(url: "\(channel)/\(seq)")
            let response = try await client.execute(request, deadline: .now() + .seconds(120))
            guard response.status == .ok else {
                _ = try? await response.body.collect(upTo: 4096)
                try await Task.sleep(for: .milliseconds(5))
                continue
            }
            for try await var chunk in response.body {
                partial.writeBuffer(&chunk)
                var stamps: [UInt64] = []
                while let newline = partial.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = partial.readSlice(length: newline - partial.readerIndex + 1)!
                    if let sent = TimedFileSink.sentAt(line) { stamps.append(monotonicNanoseconds() &- sent) }
                }
                partial.discardReadBytes()
                received.add(stamps.count)
                latencies.append(stamps)
            }
            seq += 1
        }
    }
}

/// Latencies noted by the reading task.
final class LatencyLog: Sendable {
    private let stored = RelayMutex<[UInt64]>([])
    func append(_ values: [UInt64]) { self.stored.withLock { $0.append(contentsOf: values) } }
    var values: [UInt64] { self.stored.withLock { $0 } }
}
