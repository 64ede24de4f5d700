import ArgumentParser
import AsyncHTTPClient
import ClientEgress
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import TrickleProtocol
import UnixSignals

/// `trickle-relay client`: the daemon on the user's machine.
struct ClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Subscribe to a session's events channel and republish its telemetry to an egress sink.",
        discussion: """
            Every {"type":"telemetry","event":<envelope>} line's envelope goes, byte for byte, to the sink; every \
            other event prints to standard output as JSONL (unless --quiet). Bad lines are counted, logged with \
            seq and line number, and skipped. The client rides out server restarts (retries with back-off) and \
            ends cleanly, with a summary on standard error, when the channel ends (closed, or 404; with \
            --wait-for-channel a channel that does not exist yet is waited for first). SIGTERM or \
            SIGINT stop it at once: what reached the spool stays there for the next start. SIGHUP re-reads the \
            API key.

            Sinks: log (one TELEMETRY line per envelope, on standard error), file:PATH (append the envelopes as \
            JSONL), http(s)://… (the HTTP metrics reporter: batches to that endpoint with a bearer key from \
            --api-key-file, TRICKLE_RELAY_METRICS_API_KEY or SCOPE_CLOUD_API_KEY), null (count only). Without \
            --sink: the metrics reporter when TRICKLE_RELAY_METRICS_URL (or DAYDREAM_METRICS_URL) and a key are \
            set, else the log sink. (kafka:HOST:PORT is reserved; the Kafka sink is not part of this build, and \
            KAFKA_BOOTSTRAP_SERVERS alone falls back to the log sink with a warning.)

            Spool: the metrics sink writes through a disk spool (--spool-dir, default \
            $XDG_STATE_HOME/trickle-relay/spool/<channel>, else ~/.local/state/…). An envelope counts as taken \
            once it is in the spool; spool files are deleted only after the endpoint accepted everything in \
            them, so a crash or kill -9 loses nothing that reached the spool. A restart resumes reading the \
            channel just after the last spooled line (if the server still retains it; segments it no longer \
            has are reported as lost) and delivers what is left. Delivery is at-least-once: a duplicate \
            carries the same id.

            Local endpoint (--listen, default 127.0.0.1:7071; "off" disables it): GET /telemetry/stream is a \
            Server-Sent Events stream of every relayed envelope (id, event: telemetry, data) and of the \
            channel's other events (event: their type, data: the line), resumable with \
            Last-Event-ID from the last --stream-ring envelopes, with a keep-alive comment every 15 s; GET \
            /healthz; GET /metrics (Prometheus text). With a token (--stream-token-file or \
            TRICKLE_RELAY_STREAM_TOKEN) every route but /healthz needs "Authorization: Bearer <token>" or \
            ?jwt=<token>; a non-loopback --listen requires a token.

            Start positions: latest (replay the most recent segment, then follow), next, or a seq number. A \
            spool's resume position, when there is one, takes precedence.

            Exit codes: 0 when the channel ended or the client was stopped; 64 for bad flags; 2 when the sink \
            or the spool cannot be set up (unwritable file or directory, spool in use by another client); 3 when \
            the channel was never seen (404 before any data: a mistyped URL?); 1 when the client fails while \
            running (e.g. an explicit --listen address is taken).

            Examples:
              trickle-relay client --events-url http://127.0.0.1:2939/sess-1-events --sink file:telemetry.jsonl
              TRICKLE_RELAY_METRICS_API_KEY=… trickle-relay client --events-url http://127.0.0.1:2939/sess-1-events \\
                  --sink https://metrics.example/v1/events
              curl -N http://127.0.0.1:7071/telemetry/stream
            """
    )

    @Option(name: .customLong("events-url"), help: "The session's events channel: http(s)://HOST[:PORT]/[BASE/]CHANNEL.")
    var eventsURLs: [String] = []

    /// The one channel this client follows (validated: exactly one --events-url).
    var eventsURL: String { self.eventsURLs.first ?? "" }

    @Option(help: "Where telemetry goes: log, file:PATH, http(s)://… (metrics reporter), or null. Default: from the environment.")
    var sink: String?

    @Option(help: "File holding the metrics API key (re-read on SIGHUP and every second while a 401 pauses sending).")
    var apiKeyFile: String?

    @Option(help: "Where to start reading: latest, next, or a seq number ≥ 0.")
    var start = "latest"

    @Flag(help: "Do not print non-telemetry events on standard output.")
    var quiet = false

    @Option(help: "Seconds to wait for a channel that does not exist yet (a client started before the runner's first segment). 0 treats that 404 as the end at once.")
    var waitForChannel: Double = 0

    @Option(help: "Seconds a 404 after data, without a clean close, is taken for a restarting trickle server: the client keeps asking (and resumes where it was) until the channel is back or this passes. 0 ends at that 404.")
    var reconnectGrace: Double = 30

    @Option(help: "Spool directory (default: $XDG_STATE_HOME/trickle-relay/spool/<host>_<port>_<path>).")
    var spoolDir: String?

    @Flag(help: "Send without the disk spool (events buffered in memory are lost to a crash).")
    var noSpool = false

    @Option(help: "Most bytes the spool holds; past it new events are refused and counted.")
    var spoolMaxBytes = 1 << 30

    @Flag(help: "fsync the spool after every append (survives power loss, not only process crashes).")
    var spoolFsync = false

    @Option(help: "When the file sink syncs to disk: never (leave it to the OS; a process crash loses nothing written) or batch (fsync after every batch; survives power loss).")
    var fileSync = "never"

    @Option(help: "Local endpoint for /telemetry/stream, /healthz and /metrics: HOST:PORT, or off. (default: 127.0.0.1:7071; if that port is taken, the client runs without the endpoint and says so)")
    var listen: String?

    @Option(help: "File holding the token the local endpoint requires (env: TRICKLE_RELAY_STREAM_TOKEN).")
    var streamTokenFile: String?

    @Option(help: "Envelopes the SSE stream keeps for Last-Event-ID resumption.")
    var streamRing = 10_000

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        // A missing --events-url is reported by run(): ArgumentParser reports validate()'s errors before
        // unknown options, and "client --config x" must hear that --config is unknown.
        guard !self.eventsURLs.isEmpty else { return }
        guard self.eventsURLs.count == 1 else {
            // Silently following one of them would lose the others' telemetry.
            throw ValidationError(
                "one client follows one channel: got \(self.eventsURLs.count) --events-url flags; start one client per channel (each with its own --spool-dir and --listen)"
            )
        }
        try validateEventsURL(self.eventsURL)
        let specification = try self.sinkSpecification()
        if case .kafka = specification, self.sink != nil {
            throw ValidationError("the Kafka sink is not part of this build; use --sink http(s)://…, file:PATH, log or null")
        }
        if case .metrics = specification, self.apiKey() == nil {
            throw ValidationError("the metrics sink needs an API key: --api-key-file, TRICKLE_RELAY_METRICS_API_KEY or SCOPE_CLOUD_API_KEY")
        }
        guard SubscribeCommand.startPosition(self.start) != nil else {
            throw ValidationError("--start must be latest, next or a seq number ≥ 0, got \(self.start)")
        }
        guard self.spoolMaxBytes >= 1 << 20 else { throw ValidationError("--spool-max-bytes must be at least 1 MiB (1048576)") }
        guard self.streamRing >= 1 else { throw ValidationError("--stream-ring must be at least 1") }
        guard self.fileSync == "never" || self.fileSync == "batch" else {
            throw ValidationError("--file-sync must be never or batch, got \(self.fileSync)")
        }
        try SecondsFlag.check(self.waitForChannel, "--wait-for-channel", allowsZero: true)
        try SecondsFlag.check(self.reconnectGrace, "--reconnect-grace", allowsZero: true)
        if let address = try self.listenAddress() {
            if !address.isLoopback, self.streamToken() == nil {
                throw ValidationError(
                    "--listen \(self.listen ?? "") is not loopback: set a token with --stream-token-file or TRICKLE_RELAY_STREAM_TOKEN"
                )
            }
        }
    }

    /// The API key, read now: the file if given, else the environment.
    func apiKey() -> String? {
        Environment.secret(file: self.apiKeyFile, variables: ["TRICKLE_RELAY_METRICS_API_KEY", "SCOPE_CLOUD_API_KEY"])
    }

    func streamToken() -> BearerToken? {
        Environment.secret(file: self.streamTokenFile, variables: ["TRICKLE_RELAY_STREAM_TOKEN"]).map(BearerToken.init)
    }

    /// `--listen` as host and port, or `nil` for `off`.
    func listenAddress() throws -> ListenAddress? {
        let listen = self.listen ?? "127.0.0.1:7071"
        guard listen != "off" else { return nil }
        // A bare ":PORT" means loopback.
        guard let address = ListenAddress(listen.hasPrefix(":") ? "127.0.0.1" + listen : listen) else {
            throw ValidationError("--listen must be HOST:PORT (e.g. 127.0.0.1:7071) or off, got \(listen)")
        }
        return address
    }

    /// The sink named by --sink, or chosen from the environment.
    func sinkSpecification() throws -> EgressSinkSpecification {
        if let sink {
            do { return try EgressSinkSpecification(parsing: sink) } catch { throw ValidationError(error.description) }
        }
        return .fromEnvironment(ProcessInfo.processInfo.environment, hasAPIKey: self.apiKey() != nil)
    }

    /// The spool directory for this channel: --spool-dir, else under the user's state directory.
    func spoolDirectory(for url: TrickleChannelURL) -> String {
        if let spoolDir { return spoolDir }
        let state = Environment.value("XDG_STATE_HOME") ?? ((Environment.value("HOME") ?? "/tmp") + "/.local/state")
        let withoutScheme = url.base.split(separator: "://", maxSplits: 1).last.map(String.init) ?? url.base
        let key = withoutScheme.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" }
        return state + "/trickle-relay/spool/" + String(key)
    }

    func makeSink(_ specification: EgressSinkSpecification, client: HTTPClient, logger: Logger) throws -> any EgressSink {
        switch specification {
        case .null: return NullSink()
        case .log, .kafka: return LogSink { StandardError.writeRaw($0) }
        case .metrics(let url):
            let command = self
            return MetricsReporter(configuration: .init(url: url), httpClient: client, apiKey: { command.apiKey() }, logger: logger)
        case .file(let path): return try FileSink(path: path, syncPolicy: self.fileSync == "batch" ? .everyBatch : .never)
        }
    }

    func run() async throws {
        guard !self.eventsURLs.isEmpty else { throw ValidationError("Missing expected argument '--events-url <events-url>'") }
        let logger = self.logging.makeLogger(label: "trickle-relay.client")
        let url = try TrickleChannelURL(self.eventsURL)
        let quiet = self.quiet
        var specification = try self.sinkSpecification()
        if case .kafka = specification {
            logger.warning("KAFKA_BOOTSTRAP_SERVERS is set but the Kafka sink is not part of this build; using the log sink")
            specification = .log
        }
        let listenAddress = try self.listenAddress()
        let outcome = try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            let base: any EgressSink
            let spool: Spool?
            do {
                base = try self.makeSink(specification, client: client, logger: logger)
                let usesSpool = !self.noSpool && (specification.canFailRemotely || self.spoolDir != nil)
                spool = usesSpool
                    ? try Spool(
                        configuration: .init(directory: self.spoolDirectory(for: url), maximumBytes: self.spoolMaxBytes, syncsEveryAppend: self.spoolFsync),
                        logger: logger
                    ) : nil
            } catch {
                StandardError.write("trickle-relay client: \(error)")
                throw ExitCode(2)
            }
            let reporter = base as? MetricsReporter
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            var sinkServices: [any Service] = []  // run and stopped by the daemon, after its last dispatch
            var primary = base
            var spooledSink: SpooledSink?
            if let spool {
                let spooled = SpooledSink(spool: spool, downstream: base, logger: logger)
                spooledSink = spooled
                primary = spooled
                sinkServices.append(spooled)
            } else if let reporter {
                sinkServices.append(reporter)
            }
            let stream = listenAddress.map { _ in TelemetryStream(capacity: self.streamRing) }
            let sink: any EgressSink = stream.map { FanOutSink([primary, $0]) } ?? primary

            var start = SubscribeCommand.startPosition(self.start) ?? .latest
            var resumePoint: (seq: Int, line: Int)?
            if let position = spool?.resumePosition {
                start = .seq(position.seq)
                resumePoint = (position.seq, position.line)
                logger.info("resuming from the spool's read position", metadata: ["trickle.seq": "\(position.seq)", "line": "\(position.line)"])
            }
            let daemon = ClientDaemon(
                eventsURL: url,
                httpClient: client,
                reader: .init(
                    subscriber: .init(
                        start: start,
                        channelWaitTimeout: self.waitForChannel > 0 ? SecondsFlag.duration(self.waitForChannel) : nil,
                        reconnectGrace: SecondsFlag.duration(self.reconnectGrace)
                    )
                ),
                sink: sink,
                logger: logger,
                resumingAfter: resumePoint,
                sinkServices: sinkServices
            ) { event in
                stream?.publish(event)
                guard !quiet else { return }
                var line = event.line
                line.writeInteger(UInt8(ascii: "\n"))
                StandardOutput.write(line)
            }
            var endpoint: TelemetryStreamServer?
            if let address = listenAddress, let stream {
                let metrics = ClientMetrics(daemon: daemon, spooledSink: spooledSink, reporter: reporter, stream: stream)
                let server = TelemetryStreamServer(
                    configuration: .init(host: address.host, port: address.port, token: self.streamToken(), isOptional: self.listen == nil),
                    stream: stream,
                    logger: logger,
                    metrics: { metrics.render() }
                )
                endpoint = server
                // First in the list: shut down last, after the daemon stopped feeding it.
                services.insert(.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup), at: 0)
            }
            services.append(.init(service: daemon, successTerminationBehavior: .gracefullyShutdownGroup))
            let group = ServiceGroup(
                configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            )
            let listeningEndpoint = endpoint
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask {
                    guard let endpoint = listeningEndpoint, let port = try? await endpoint.waitUntilListening(), port >= 0 else { return }
                    StandardError.write("SSE stream: http://\(endpoint.configuration.host):\(port)/telemetry/stream")
                }
                tasks.addTask {
                    for await _ in await UnixSignalsSequence(trapping: .sighup) {
                        logger.info("SIGHUP: re-reading the API key")
                        reporter?.reloadKey()
                    }
                }
                do {
                    try await group.run()
                } catch {
                    tasks.cancelAll()
                    StandardError.write("trickle-relay client: \(error)")
                    throw ExitCode(1)
                }
                tasks.cancelAll()
            }
            return (daemon.endOfStream, daemon.dispatcher.stats, spooledSink?.spool.stats, reporter?.stats)
        }
        let (end, counters, spoolStats, reporterStats) = outcome
        let ending = end.map { $0 == TrickleSubscriber.EndOfStream.closed ? "the channel was closed" : "the channel does not exist (404)" } ?? "stopped"
        var summary =
            "client ended (\(ending)): \(counters.lines) lines, \(counters.telemetry) telemetry to the \(specification) sink, malformed \(counters.malformed), non-object \(counters.nonObject), telemetry without an object event \(counters.telemetryWithoutObjectEvent), oversize \(counters.oversize), sink failures \(counters.sinkFailures), segments lost \(counters.segmentsLost)"
        if counters.skippedOnResume > 0 { summary += ", already spooled before the restart \(counters.skippedOnResume)" }
        if let spoolStats {
            summary +=
                "; spool: appended \(spoolStats.appended), refused (full) \(spoolStats.overflowed), torn lines \(spoolStats.tornLines), corrupt lines \(spoolStats.corruptLines), left \(spoolStats.bytes) bytes"
        }
        if let reporterStats {
            summary +=
                "; endpoint: sent \(reporterStats.sent), rejected (400) \(reporterStats.rejected), too large \(reporterStats.tooLarge), overflowed \(reporterStats.overflowed), unsendable \(reporterStats.unsendable), waiting \(reporterStats.buffered)"
        }
        StandardError.write(summary)
        if end == .notFound, counters.lines == 0, counters.segmentsLost == 0 {
            // 404 before any data: most likely a mistyped events URL, not a session that ended.
            StandardError.write(
                "trickle-relay client: the channel \(TrickleChannelURL.redacted(self.eventsURL)) was never seen (404 before any data): check the events URL, or wait for it with --wait-for-channel SECONDS"
            )
            throw ExitCode(Self.channelNeverSeenExitStatus)
        }
    }

    /// Exit status when the channel answered 404 before any data (README, "Exit codes").
    static let channelNeverSeenExitStatus: Int32 = 3
}
