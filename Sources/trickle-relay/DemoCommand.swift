import ArgumentParser
import AsyncHTTPClient
import ClientEgress
import RelayDemo
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import RunnerRelay
import ServiceLifecycle
import Synchronization
import UnixSignals
import TrickleProtocol
import TrickleRelaySupport

/// `trickle-relay demo`: server, runner agent and client daemon in one process, telemetry flowing end to end.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a trickle server, a runner agent and a client daemon in one process and watch telemetry flow.",
        discussion: """
            Everything listens on ephemeral loopback ports; nothing needs configuring. The runner side feeds a \
            recorded runner session in a loop — built in (a copy of fixtures/clean-session.jsonl: runner_ready, \
            logs, notifications, stream_started, lifecycle, metric, error and heartbeat telemetry), or the file \
            given with --fixture — exactly as a runner app would write it on the agent's stdin, at 100 lines per \
            second or --rate. With --rate and no --fixture it emits synthetic heartbeat telemetry at that rate \
            instead (plus a runner_ready control event): the way to load it. The client \
            side counts what reaches its sink and how long it took. A status line every second shows relayed, \
            dropped, delivered and latency p50/p99 (ms); the summary at the end should show relayed = delivered \
            on an unloaded machine. With --sse the client also serves its live SSE stream on a loopback port and \
            prints the URL (open it in a browser, or curl -N it). SIGTERM or SIGINT stops feeding at once; the \
            relay and the client get 1.5 s to drain, then the summary is printed. Exit status 0 when nothing was \
            lost, 1 otherwise (also after a signal: the summary says what was relayed and delivered until then).

            Examples:
              trickle-relay demo --duration 10
              trickle-relay demo --fixture fixtures/clean-session.jsonl --rate 50 --sse --duration 60
            """
    )

    @Option(help: "Seconds to run.")
    var duration: Double = 10

    @Option(help: "Lines per second of the recorded session (default 100); without --fixture, synthetic telemetry events per second instead.")
    var rate: Int?

    @Option(help: "A recorded runner session (JSONL, one event per line) to feed in a loop instead of the built-in one.")
    var fixture: String?

    @Flag(help: "Serve the client's SSE stream (GET /telemetry/stream) on a loopback port and print its URL.")
    var sse = false

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        try SecondsFlag.check(self.duration, "--duration")
        if let rate, !(1...10_000_000).contains(rate) { throw ValidationError("--rate must be 1…10000000 per second, got \(rate)") }
    }

    /// The session's lines (the built-in one unless --fixture), or `nil` for synthetic load (--rate alone).
    func fixtureLines() throws -> [ByteBuffer]? {
        let data: Data
        if let fixture {
            guard let contents = FileManager.default.contents(atPath: fixture) else {
                throw ValidationError("cannot read the fixture \(fixture); pass a JSONL file such as fixtures/clean-session.jsonl")
            }
            data = contents
        } else if self.rate != nil {
            return nil
        } else {
            data = Data(DemoSession.jsonl.utf8)
        }
        let lines = data.split(separator: UInt8(ascii: "\n")).filter { !$0.isEmpty }.map { ByteBuffer(bytes: $0) }
        guard !lines.isEmpty else { throw ValidationError("the fixture \(fixture ?? "") has no lines") }
        return lines
    }

    func run() async throws {
        let lines = try self.fixtureLines()
        var options = self.logging
        options.logLevel = options.logLevel ?? "warning"
        let logger = options.makeLogger(label: "trickle-relay.demo")
        let server = TrickleServer(configuration: .init(port: 0), logger: logger)
        let sink = LatencySink()
        let outcome = try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            let stream = self.sse ? TelemetryStream() : nil
            let driver = DemoDriver(
                server: server,
                client: client,
                sink: sink,
                stream: stream,
                duration: self.duration,
                rate: self.rate ?? (lines == nil ? 200 : 100),
                fixture: lines,
                logger: logger
            ) { StandardError.write($0) }
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: server)]
            if let stream {
                let endpoint = TelemetryStreamServer(configuration: .init(port: 0), stream: stream, logger: logger) {
                    driver.metricsText()
                }
                services.append(.init(service: endpoint))
                services.append(
                    .init(
                        service: OneShotService(name: "SSE URL") {
                            guard let port = try? await endpoint.waitUntilListening() else { return }
                            StandardError.write("SSE stream: http://127.0.0.1:\(port)/telemetry/stream   (metrics: http://127.0.0.1:\(port)/metrics)")
                        },
                        successTerminationBehavior: .ignore
                    )
                )
            }
            // When the driver is done, the group shuts the servers down gracefully.
            let group = ServiceGroup(
                configuration: .init(
                    services: services + [.init(service: driver, successTerminationBehavior: .gracefullyShutdownGroup)],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
            return driver.outcome
        }
        guard let (summary, counters) = outcome else { throw ExitCode(1) }
        let snapshot = sink.snapshot
        StandardError.write(DemoDriver.status(summary.sink, snapshot))
        StandardError.write(
            """
            summary: emitted \(summary.sink.emitted) telemetry events; relayed \(summary.sink.relayed) (\(summary.segments) segments); \
            dropped \(summary.sink.dropped); delivered \(snapshot.delivered) to the client sink \
            (+\(counters.byType.filter { $0.key != "telemetry" }.values.reduce(0, +)) control events to local consumers); \
            latency p50 \(snapshot.p50) ms, p99 \(snapshot.p99) ms; \
            \(summary.sink.relayed == snapshot.delivered ? "relayed = delivered" : "LOST \(summary.sink.relayed - snapshot.delivered)")
            """
        )
        if summary.sink.relayed != snapshot.delivered || summary.sink.dropped > 0 { throw ExitCode(1) }
    }
}
