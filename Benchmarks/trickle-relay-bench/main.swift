// Throughput benchmarks for TrickleProtocol. Build and run in release:
//   TRICKLE_RELAY_BENCHMARKS=1 swift run -c release trickle-relay-bench [reader|relay|emit|dispatcher|replay|spool|latency|flood|scan|all]
//   … trickle-relay-bench sdkwriter [rates] [seconds] [url pid]   (the server under the SDK's one-chunk-per-line writes)
//   … trickle-relay-bench cycles [count] [url pid]                  (server RSS across channel lifecycles)
//   … trickle-relay-bench fleet [--https|--http2] [--servers N] [channels rate seconds]   (one client daemon following many channels)
//   … trickle-relay-bench waiting [count settle window] [--no-announce-channels]  (subscriptions waiting for their channels)
//   … trickle-relay-bench kafka [events]                            (the Kafka sink into librdkafka's mock cluster)
// Prints numbers; asserts nothing (figures live in docs/benchmarks.md and the issue notes).

import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

let logger = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })

/// A counter shared between the producing and the consuming task.
final class Counter: Sendable {
    private let atomic = Atomic<Int>(0)
    func add(_ value: Int) { self.atomic.add(value, ordering: .relaxed) }
    var value: Int { self.atomic.load(ordering: .relaxed) }
}

func megabytesPerSecond(_ bytes: Int, _ duration: Duration) -> Double {
    Double(bytes) / 1_000_000 / duration.seconds
}

extension Duration {
    var seconds: Double { Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18 }
}

/// ~1 KB realistic events-channel lines.
func makeLines(totalBytes: Int) -> ByteBuffer {
    var buffer = ByteBufferAllocator().buffer(capacity: totalBytes + 2048)
    var n = 0
    while buffer.readableBytes < totalBytes {
        let pad = String(repeating: "x", count: 800 + n % 100)
        buffer.writeString(
            #"{"type":"telemetry","event":{"id":"6f1c2b7e-3d2a-4f0e-9a51-\#(String(format: "%012d", n))","type":"stream_trace","timestamp":"1763769600\#(n % 1000)","data":{"type":"stream_heartbeat","client_source":"scope","session_id":"sess-42","fps_in":29.97,"frames":[1,2,3],"note":"\#(pad)","e":"caf\u00e9"}}}"#
        )
        buffer.writeInteger(UInt8(ascii: "\n"))
        n += 1
    }
    return buffer
}

func benchmarkReader() {
    let total = 200 * 1024 * 1024
    let data = makeLines(totalBytes: total)
    let chunkSize = 64 * 1024
    for pass in 1...3 {
        var parser = JSONLSegmentParser(source: "bench", seq: 0, maximumSegmentBytes: .max, maximumLineBytes: 5 * 1024 * 1024)
        var items: [JSONLSegmentParser.Item] = []
        var lines = 0
        var diagnostics = 0
        var remaining = data
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            while remaining.readableBytes > 0 {
                let chunk = remaining.readSlice(length: min(chunkSize, remaining.readableBytes))!
                parser.feed(chunk, into: &items)
                for item in items {
                    if case .line = item { lines += 1 } else { diagnostics += 1 }
                }
                items.removeAll(keepingCapacity: true)
            }
            parser.finishSegment(into: &items)
        }
        print(
            String(
                format: "reader pass %d: %.0f MB in %.3f s = %.0f MB/s, %.0f lines/s (%d lines, %d diagnostics; framing + strict validation)",
                pass, Double(data.readableBytes) / 1e6, elapsed.seconds,
                megabytesPerSecond(data.readableBytes, elapsed), Double(lines) / elapsed.seconds, lines, diagnostics
            )
        )
    }
    var framer = JSONLFramer(maximumLineBytes: 5 * 1024 * 1024)
    var frames: [JSONLFramer.Frame] = []
    var remaining = data
    var count = 0
    let elapsed = ContinuousClock().measure {
        while remaining.readableBytes > 0 {
            framer.feed(remaining.readSlice(length: min(chunkSize, remaining.readableBytes))!, into: &frames)
            count += frames.count
            frames.removeAll(keepingCapacity: true)
        }
    }
    print(String(format: "framing only: %.0f MB/s (%d lines)", megabytesPerSecond(data.readableBytes, elapsed), count))
}

func benchmarkRelay() async throws {
    let server = TrickleServer(configuration: .init(port: 0), logger: logger)
    try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try await server.waitUntilListening()

            // Raw segments: 4 MiB segments of 256 KiB writes.
            do {
                server.createChannel(named: "raw")
                let url = try TrickleChannelURL("http://127.0.0.1:\(port)/raw")
                let publisher = TricklePublisher(url: url, httpClient: client, configuration: .init(start: .seq(0)), logger: logger)
                let subscriber = TrickleSubscriber(
                    url: url,
                    httpClient: client,
                    configuration: .init(start: .seq(0), maximumSegmentBytes: 8 * 1024 * 1024),
                    logger: logger
                )
                let total = 1024 * 1024 * 1024
                let chunk = ByteBuffer(repeating: UInt8(ascii: "a"), count: 256 * 1024)
                let received = Counter()
                let clock = ContinuousClock()
                let start = clock.now
                try await withThrowingTaskGroup(of: Void.self) { inner in
                    inner.addTask { try await publisher.run() }
                    inner.addTask {
                        _ = try await subscriber.run { event in
                            if case .bytes(let bytes, _) = event { received.add(bytes.readableBytes) }
                        }
                    }
                    var sent = 0
                    while sent < total {
                        try await publisher.write(chunk)
                        sent += chunk.readableBytes
                        if sent % (4 * 1024 * 1024) == 0 { await publisher.finishSegment() }
                        // Stay within the ring of 5 behind the writer.
                        while sent - received.value > 12 * 1024 * 1024 { await Task.yield() }
                    }
                    try await publisher.close()
                    try await inner.waitForAll()
                }
                let elapsed = clock.now - start
                print(
                    String(
                        format: "relay (publisher -> server -> subscriber, loopback): %.0f MB in %.2f s = %.0f MB/s, %d segments",
                        Double(received.value) / 1e6, elapsed.seconds,
                        megabytesPerSecond(received.value, elapsed), publisher.stats.segments
                    )
                )
            }

            // JSONL: JSONLWriter -> server -> JSONLReader with ~1 KB lines.
            do {
                server.createChannel(named: "jsonl")
                let url = try TrickleChannelURL("http://127.0.0.1:\(port)/jsonl")
                let writer = JSONLWriter(url: url, httpClient: client, logger: logger)
                let reader = JSONLReader(url: url, httpClient: client, configuration: .init(subscriber: .init(start: .seq(0))), logger: logger)
                var data = makeLines(totalBytes: 200 * 1024 * 1024)
                var lines: [ByteBuffer] = []
                while let newline = data.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(data.readSlice(length: newline - data.readerIndex)!)
                    data.moveReaderIndex(forwardBy: 1)
                }
                let count = lines.count
                let bytes = lines.reduce(0) { $0 + $1.readableBytes + 1 }
                let received = Counter()
                let clock = ContinuousClock()
                let start = clock.now
                try await withThrowingTaskGroup(of: Void.self) { inner in
                    inner.addTask { try await writer.run() }
                    inner.addTask {
                        _ = try await reader.run { item in
                            if case .line = item { received.add(1) }
                        }
                    }
                    for (index, line) in lines.enumerated() {
                        try await writer.write(line: line)
                        while index - received.value > 15_000 { await Task.yield() }
                    }
                    try await writer.close()
                    try await inner.waitForAll()
                }
                let elapsed = clock.now - start
                print(
                    String(
                        format: "jsonl relay (JSONLWriter -> server -> JSONLReader): %d of %d lines, %.0f MB in %.2f s = %.0f MB/s, %.0f lines/s, %d segments",
                        received.value, count, Double(bytes) / 1e6, elapsed.seconds,
                        megabytesPerSecond(bytes, elapsed), Double(count) / elapsed.seconds, writer.publisher.stats.segments
                    )
                )
            }
            group.cancelAll()
        }
    }
}

let which = CommandLine.arguments.dropFirst().first ?? "all"
ObservabilityModes.bootstrapMetrics()
print("observability: \(ObservabilityModes.description)")
let floodSeconds = CommandLine.arguments.dropFirst(2).first.flatMap(Int.init) ?? 30
if which == "reader" || which == "all" { benchmarkReader() }
if which == "relay" || which == "all" { try await benchmarkRelay() }
if which == "emit" || which == "all" { try await benchmarkEmit() }
if which == "dispatcher" || which == "all" { try await benchmarkDispatcher() }
if which == "replay" || which == "all" { try await benchmarkReplay() }
if which == "spool" || which == "all" { try await benchmarkSpool() }
if which == "latency1k" { try await benchmarkLatency(rate: 1_000, seconds: 10) }
if which == "latency100k" { try await benchmarkLatency(rate: 100_000, seconds: 10) }
if which == "latency" || which == "all" {
    try await benchmarkLatency(rate: 1_000, seconds: 10)
    try await benchmarkLatency(rate: 100_000, seconds: 10)
}
if which == "cycles" { try await ChannelCyclesBenchmark.run(arguments: Array(CommandLine.arguments.dropFirst(2))) }
if which == "kafka" { try await KafkaBenchmark.run(arguments: Array(CommandLine.arguments.dropFirst(2))) }
if which == "fleet" { try await FleetBenchmark.run(arguments: Array(CommandLine.arguments.dropFirst(2))) }
if which == "waiting" { try await WaitingBenchmark.run(arguments: Array(CommandLine.arguments.dropFirst(2))) }
if which == "scan" { try ScanBenchmark.run(arguments: Array(CommandLine.arguments.dropFirst(2))) }
if which == "sdkwriter" { try await SDKWriterBenchmark.run(arguments: Array(CommandLine.arguments.dropFirst(2))) }
if which == "flood" || which == "all" { try await benchmarkFlood(seconds: floodSeconds, factor: 10) }
