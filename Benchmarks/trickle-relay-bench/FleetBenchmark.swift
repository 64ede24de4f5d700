import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// Issue #11's fleet benchmark: one `trickle-relay client` process follows many channels of one `trickle-relay
/// serve` process, into a file sink. This process publishes numbered, time-stamped lines on every channel (one
/// streaming POST per 10 s segment, one chunk per line, as the SDK writes, on raw connections), tails the client's output file, and
/// prints events/s, loss, the daemon's CPU and peak RSS, p50/p99 from write to the file, and how long a request
/// of another client (a GET of a retained segment) takes on the server, idle and under the fleet.
///
/// `fleet [--https] [--servers N] [--spread-segments] [channels] [rate per channel] [seconds]`; without numbers: 1,000 × 10/s for 30 s,
/// then 100 × 1,000/s for 20 s. `--servers N` spreads the channels over N `serve` processes (a server holds two
/// descriptors per followed channel: 10,000 sessions need two here). The publishers connect in batches before
/// the clock starts (8,000 simultaneous connects overflow the listen backlog). `--http2`: over TLS, the server offering HTTP/2 and the daemon reading through it
/// (multiplexed). `--https` runs everything over TLS (a self-signed certificate the client trusts through
/// `ca_file`): server, publishers, the daemon's subscribers.
struct FleetBenchmark {
    var channels: Int
    var rate: Int
    var seconds: Int
    var https = false
    /// `--http2`: over TLS, `serve --http2` and `client --http2` (the daemon's subscribers multiplexed through
    /// its HTTP client instead of one connection each).
    var http2 = false
    var servers = 1
    /// `--spread-segments`: channels start spread over a whole segment (10 s), so their segments rotate at
    /// different moments, as sessions that started at different times do; without it they start within the
    /// first interval and every segment rotates in the same second (the worst case).
    var spreadsSegments = false

    static func run(arguments: [String]) async throws {
        var arguments = arguments
        var servers = 1
        if let flag = arguments.firstIndex(of: "--servers"), flag + 1 < arguments.count, let count = Int(arguments[flag + 1]), count >= 1 {
            servers = count
            arguments.removeSubrange(flag...(flag + 1))
        }
        let numbers = arguments.compactMap { Int($0) }
        let http2 = arguments.contains("--http2")
        let https = http2 || arguments.contains("--https")
        let spreadsSegments = arguments.contains("--spread-segments")
        let runs =
            numbers.count >= 3
            ? [FleetBenchmark(channels: numbers[0], rate: numbers[1], seconds: numbers[2], https: https, http2: http2, servers: servers, spreadsSegments: spreadsSegments)]
            : [
                FleetBenchmark(channels: 1_000, rate: 10, seconds: 30, https: https, http2: http2),
                FleetBenchmark(channels: 100, rate: 1_000, seconds: 20, https: https, http2: http2),
            ]
        for run in runs { try await run.measure() }
    }

    func measure() async throws {
        let certificate = self.https ? try BenchServer.makeCertificate() : nil
        let firstPort = 29_000 + Int.random(in: 0..<1_000)
        var servers: [BenchServer] = []
        for index in 0..<self.servers {
            servers.append(
                try await BenchServer.startOrAttach(arguments: [], tls: certificate, serveArguments: self.http2 ? ["--http2"] : [], port: firstPort + index * 1_000)
            )
        }
        defer { for server in servers { server.stop() } }
        let server = servers[0]
        let trust = try certificate.map { try OutboundTLS(caFile: $0.certificate).configuration() }
        let publisherTLS = try certificate.map { _ in try NIOSSLContext(configuration: trust!) }
        let tag = UInt32.random(in: 0...UInt32.max)
        let channels = (0..<self.channels).map { "\(servers[$0 % servers.count].url)/fleet-\(tag)-\($0)-events" }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-bench-\(tag).jsonl").path
        let configPath = output + ".config.json"
        let spool = output + ".spool"
        defer {
            for path in [output, configPath] { try? FileManager.default.removeItem(atPath: path) }
            try? FileManager.default.removeItem(atPath: spool)
        }
        FileManager.default.createFile(atPath: output, contents: nil)

        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(connectionsPerHost: 8_192, tls: trust)) { client in
            // Channels exist before the client starts (it reads each from seq 0), and one more for the probe.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, channel) in (channels + ["\(server.url)/fleet-\(tag)-probe"]).enumerated() {
                    group.addTask { try await Self.create(channel, client: client) }
                    if index % 64 == 63 { try await group.waitForAll() }
                }
                try await group.waitForAll()
            }
            let probeURL = "\(server.url)/fleet-\(tag)-probe/0"
            var probe = HTTPClientRequest(url: probeURL)
            probe.method = .POST
            probe.body = .bytes(ByteBuffer(string: #"{"type":"probe"}"# + "\n"))
            _ = try await client.execute(probe, timeout: .seconds(5)).body.collect(upTo: 1024)
            let idleProbe = try await Self.probe(probeURL, count: 50, client: client)

            let subscriptions = channels.map { #"{"events_url":"\#($0)","start":0}"# }.joined(separator: ",")
            let caField = certificate.map { #""ca_file":"\#($0.certificate)","# } ?? ""
            try Data(#"{\#(caField)"sink":"file:\#(output)","spool":false,"spool_dir":"\#(spool)","listen":"off","subscriptions":[\#(subscriptions)]}"#.utf8)
                .write(to: URL(fileURLWithPath: configPath))
            let daemon = Process()
            daemon.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("trickle-relay")
            daemon.arguments = ["client", "--config", configPath, "--quiet", "--log-level", "warning"] + (self.http2 ? ["--http2"] : [])
            try daemon.run()
            defer { daemon.terminate() }
            // Let every subscription reach its live edge (a benchmark may settle; a test may not): about a
            // second per thousand channels.
            try await Task.sleep(for: .seconds(max(3, self.channels / 1_000 * 3 / 2)))
            let restCPUBefore = BenchServer.cpuTime(pid: daemon.processIdentifier)
            try await Task.sleep(for: .seconds(3))
            let restCPU = BenchServer.cpuTime(pid: daemon.processIdentifier) - restCPUBefore
            let rssAtRest = BenchServer.residentBytes(pid: daemon.processIdentifier)
            let daemonSockets = BenchServer.sockets(pid: daemon.processIdentifier)

            let total = self.channels * self.rate * self.seconds
            let tail = FileTail(path: output, channels: self.channels, perChannel: self.rate * self.seconds)
            let peakRSS = Peak()
            let probeUnderLoad = LatencyLog()
            let daemonCPUBefore = BenchServer.cpuTime(pid: daemon.processIdentifier)
            // Every publisher connected before the clock starts, in batches (not the measured work).
            var connections: [any Channel] = []
            connections.reserveCapacity(channels.count)
            for batch in stride(from: 0, to: channels.count, by: 256) {
                let end = min(batch + 256, channels.count)
                let made = try await withThrowingTaskGroup(of: (Int, any Channel).self) { group in
                    for index in batch..<end {
                        group.addTask {
                            let url = URL(string: channels[index])!
                            return (index, try await ChunkedLinePublisher.connect(host: url.host!, port: url.port!, tls: publisherTLS))
                        }
                    }
                    var made: [(Int, any Channel)] = []
                    for try await connection in group { made.append(connection) }
                    return made.sorted { $0.0 < $1.0 }.map(\.1)
                }
                connections.append(contentsOf: made)
            }
            let publishers = connections
            let serverCPUBefore = servers.map { BenchServer.cpuTime(pid: $0.pid) }
            let benchCPUBefore = BenchServer.cpuTime(pid: getpid())
            let clock = ContinuousClock()
            let began = clock.now
            let beganDeadline = NIODeadline.now()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await tail.follow() }
                group.addTask {
                    while !Task.isCancelled {
                        peakRSS.note(BenchServer.residentBytes(pid: daemon.processIdentifier))
                        probeUnderLoad.append(try await Self.probe(probeURL, count: 1, client: client))
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
                try await withThrowingDiscardingTaskGroup { writers in
                    for (index, channel) in channels.enumerated() {
                        writers.addTask {
                            try await Self.publish(channel: channel, on: publishers[index], index: index, rate: self.rate, seconds: self.seconds, began: beganDeadline, spreadsSegments: self.spreadsSegments)
                        }
                    }
                }
                let sendEnded = clock.now
                // The daemon has until 10 s after the last write.
                while tail.received < total, clock.now < sendEnded + .seconds(10) { try await Task.sleep(for: .milliseconds(20)) }
                group.cancelAll()
            }
            let elapsed = clock.now - began
            let daemonCPU = BenchServer.cpuTime(pid: daemon.processIdentifier) - daemonCPUBefore
            let serverCPU = zip(servers, serverCPUBefore).reduce(Duration.zero) { $0 + BenchServer.cpuTime(pid: $1.0.pid) - $1.1 }
            let benchCPU = BenchServer.cpuTime(pid: getpid()) - benchCPUBefore
            // The publishers' connections end after the measurement (see `ChunkedLinePublisher.end`).
            await withDiscardingTaskGroup { enders in
                for publisher in publishers { enders.addTask { await ChunkedLinePublisher.end(publisher) } }
            }
            let latencies = tail.latencies.sorted()
            let probes = probeUnderLoad.values.sorted()
            print(
                String(
                    format:
                        (self.http2 ? "h2    " : self.https ? "https " : "http  ") + (self.spreadsSegments ? "spread " : "") + "fleet %5d channels on \(servers.count) server(s) × %5d/s for %d s: %d of %d events in the file (loss %d, duplicates %d), %.0f events/s; daemon CPU %.2f s = %.1f%% of one core (%.1f%% idle, before the first event; %.2f s CPU to start and connect every channel), %d sockets, RSS %.1f MiB at rest, %.1f MiB peak; write→file p50 %.2f ms p99 %.2f ms; server CPU %.1f%%, publishers + tail (this process) %.1f%%; other requests on the server p50/p99 %.2f/%.2f ms idle, %.2f/%.2f ms under the fleet",
                    self.channels, self.rate, self.seconds, tail.received, total, total - tail.received, tail.duplicates,
                    Double(tail.received) / elapsed.seconds, daemonCPU.seconds, 100 * daemonCPU.seconds / elapsed.seconds, 100 * restCPU.seconds / 3, restCPUBefore.seconds, daemonSockets,
                    Double(rssAtRest) / 1_048_576, Double(peakRSS.value) / 1_048_576,
                    Self.percentile(latencies, 0.5), Self.percentile(latencies, 0.99), 100 * serverCPU.seconds / elapsed.seconds, 100 * benchCPU.seconds / elapsed.seconds,
                    Self.percentile(idleProbe, 0.5), Self.percentile(idleProbe, 0.99), Self.percentile(probes, 0.5), Self.percentile(probes, 0.99)
                )
            )
        }
    }

    static func percentile(_ sorted: [UInt64], _ p: Double) -> Double {
        sorted.isEmpty ? .nan : Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6
    }

    static func create(_ channel: String, client: HTTPClient) async throws {
        var create = HTTPClientRequest(url: channel)
        create.method = .POST
        create.headers.add(name: "Expect-Content", value: "application/jsonl")
        _ = try await client.execute(create, timeout: .seconds(30)).body.collect(upTo: 1024)
    }

    /// Times `count` GETs of a retained segment: what any other client of the server sees.
    static func probe(_ url: String, count: Int, client: HTTPClient) async throws -> [UInt64] {
        var times: [UInt64] = []
        for _ in 0..<count {
            let start = monotonicNanoseconds()
            _ = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(30)).body.collect(upTo: 1 << 20)
            times.append(monotonicNanoseconds() - start)
        }
        return times
    }

    /// Publishes `rate × seconds` lines on one channel, paced, in 10 s segments (one streaming POST each, one
    /// chunk per line) — on a raw connection (`ChunkedLinePublisher`), so this process's share of the two cores
    /// is small.
    static func publish(channel: String, on connection: any Channel, index: Int, rate: Int, seconds: Int, began: NIODeadline, spreadsSegments: Bool) async throws {
        guard let url = URL(string: channel) else { return }
        // Channels start spread over the first interval, as sessions do.
        // (or, with `spreadsSegments`, over a whole 10 s segment).
        let interval: Int64 = spreadsSegments ? 10_000_000_000 : 1_000_000_000 / Int64(max(rate, 1))
        let offset = TimeAmount.nanoseconds(Int64(index % 1_000) * interval / 1_000)
        try await ChunkedLinePublisher.publish(
            on: connection,
            path: url.path,
            rate: rate,
            seconds: seconds,
            segmentLines: rate * 10,
            start: began + offset
        ) { n in
            #"{"type":"telemetry","event":{"id":"f\#(index)-\#(n)","type":"stream_trace","data":{"type":"metric","n":\#(n),"t":\#(monotonicNanoseconds())}}}"#
        }
    }
}

/// Follows the client's output file as it grows: counts each `f<channel>-<n>` id once (and the repeats), and
/// notes each line's latency from its `"t":` stamp to the moment it was read.
final class FileTail: Sendable {
    private struct State {
        var seen: [[Bool]]
        var received = 0
        var duplicates = 0
        var latencies: [UInt64] = []
    }

    let path: String
    private let state: RelayMutex<State>
    private let stopped = Atomic<Bool>(false)

    init(path: String, channels: Int, perChannel: Int) {
        self.path = path
        self.state = RelayMutex(State(seen: Array(repeating: Array(repeating: false, count: perChannel), count: channels)))
    }

    var received: Int { self.state.withLock { $0.received } }
    var duplicates: Int { self.state.withLock { $0.duplicates } }
    var latencies: [UInt64] { self.state.withLock { $0.latencies } }

    /// Follows the file on a thread of its own until cancelled: the moment a line is read must not wait for a
    /// turn on the concurrency pool this process's publisher tasks share.
    func follow() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                Thread {
                    self.followUntilStopped()
                    continuation.resume()
                }.start()
            }
        } onCancel: {
            self.stopped.store(true, ordering: .relaxed)
        }
    }

    private func followUntilStopped() {
        guard let handle = FileHandle(forReadingAtPath: self.path) else { return }
        var partial = ByteBuffer()
        while !self.stopped.load(ordering: .relaxed) {
            let data = handle.availableData
            if data.isEmpty {
                usleep(1_000)
                continue
            }
            let now = monotonicNanoseconds()
            partial.writeBytes(data)
            var ids: [(Int, Int)] = []
            var latencies: [UInt64] = []
            while let newline = partial.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                let line = partial.readSlice(length: newline - partial.readerIndex + 1)!
                if let sent = TimedFileSink.sentAt(line) { latencies.append(now &- sent) }
                if let id = Self.id(line) { ids.append(id) }
            }
            partial.discardReadBytes()
            self.state.withLock { state in
                state.latencies.append(contentsOf: latencies)
                for (channel, n) in ids where channel < state.seen.count && n < state.seen[channel].count {
                    if state.seen[channel][n] {
                        state.duplicates += 1
                    } else {
                        state.seen[channel][n] = true
                        state.received += 1
                    }
                }
            }
        }
    }

    /// `(channel, n)` from `"id":"f<channel>-<n>"`.
    static func id(_ line: ByteBuffer) -> (Int, Int)? {
        let text = String(buffer: line)
        guard let start = text.range(of: #""id":"f"#)?.upperBound, let end = text[start...].firstIndex(of: "\"") else { return nil }
        let parts = text[start..<end].split(separator: "-")
        guard parts.count == 2, let channel = Int(parts[0]), let n = Int(parts[1]) else { return nil }
        return (channel, n)
    }
}

/// The largest value noted.
final class Peak: Sendable {
    private let peak = Atomic<Int>(0)
    func note(_ value: Int) { self.peak.max(value, ordering: .relaxed) }
    var value: Int { self.peak.load(ordering: .relaxed) }
}
