import ArgumentParser
import RelayTracing
import AsyncHTTPClient
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
import TrickleProtocol
import TrickleRelaySupport
import UnixSignals

/// `trickle-relay runner`: the agent beside a GPU runner.
struct RunnerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runner",
        abstract: "Relay a runner's events and telemetry onto its session's trickle events channel.",
        discussion: """
            Single-session mode reads JSON Lines on standard input, the lines the runner app would write on its \
            events channel itself:
              {"type":"telemetry","event":{…}}   telemetry: the event is stamped into a stream_trace envelope \
            (unless it already is one), scrubbed, queued (bounded, oldest dropped first) and relayed;
              {"id":…,"type":"stream_trace",…}   a bare envelope: telemetry, kept as is;
              any other JSON object               a control-path event (runner_ready, logs, notification, \
            responses): passed through unchanged, lossless, ahead of queued telemetry.
            At end of input the queue is flushed, the channel is closed (readers see end of stream) and the \
            agent exits 0. SIGTERM does the same.

            Multi-session mode (no --events-url) serves a loopback HTTP ingest API on --listen (default \
            127.0.0.1:7070): POST /v1/sessions {"session_id","events_url","connection_id"?}, \
            DELETE /v1/sessions/{id}, POST /v1/sessions/{id}/telemetry (a JSON object or JSONL), \
            POST /v1/sessions/{id}/events (control path), GET /healthz, GET /metrics. Listening beyond loopback \
            requires --token (or TRICKLE_RELAY_TOKEN); requests then need "Authorization: Bearer <token>".

            Telemetry is relayed only with consent: --telemetry on or TRICKLE_RELAY_TELEMETRY=1; DO_NOT_TRACK=1 \
            or TRICKLE_RELAY_TELEMETRY=0 always wins.

            Examples:
              my-runner | trickle-relay runner --events-url http://127.0.0.1:2939/sess-1-events \\
                  --session-id sess-1 --telemetry on
              trickle-relay runner --telemetry on --listen 127.0.0.1:7070
            """
    )

    @Option(help: "Single-session mode: the session's events channel, http(s)://HOST[:PORT]/[BASE/]CHANNEL.")
    var eventsURL: String?

    @Option(help: "Single-session mode: the session id stamped into envelopes that lack one.")
    var sessionID: String?

    @Option(help: "Multi-session mode: HOST:PORT of the ingest API.")
    var listen = "127.0.0.1:7070"

    @Option(help: "Multi-session mode: sessions at once; more are answered 503 with Retry-After (each holds a queue and two connections to its trickle server).")
    var maxSessions = 1_000

    @Option(help: "Multi-session mode: bearer token required by the ingest API (env TRICKLE_RELAY_TOKEN). Prefer --token-file: a token on the command line shows in ps.")
    var token: String?

    @Option(help: "Multi-session mode: a file holding the ingest API's bearer token.")
    var tokenFile: String?

    @Option(help: "The connection id stamped into envelopes that lack one.")
    var connectionID: String?

    @Option(help: "Relay telemetry: on or off (env TRICKLE_RELAY_TELEMETRY; DO_NOT_TRACK=1 always turns it off).")
    var telemetry: String?

    @Flag(help: "Do not scrub secrets and personal data from telemetry strings.")
    var noScrub = false

    @Option(help: "data.client_source of stamped envelopes.")
    var clientSource = "scope"

    @Option(help: "Most telemetry events queued before the oldest are dropped.")
    var maxQueueEvents = 1024

    @Option(help: "Most telemetry bytes queued before the oldest are dropped.")
    var maxQueueBytes = 16 * 1024 * 1024

    @Option(help: "Seconds an events segment stays open.")
    var segmentWindow: Double = 10

    @Option(help: "Seconds the final flush may take at the end of the session.")
    var flushTimeout: Double = 5

    @Option(help: "Seconds to wait after the last segment is sent before deleting the channel, so readers behind a real orchestrator (which forgets a deleted channel at once) can fetch the tail. 0 deletes at once.")
    var closeLinger: Double = 1

    @Option(help: "Seconds between relay_heartbeat events.")
    var heartbeatInterval: Double = 30

    @OptionGroup var logging: LoggingOptions

    @OptionGroup(title: "TLS (outbound https://: trust and client certificate)") var tls: TLSOptions

    @OptionGroup(title: "Tracing (the relay's own spans over OTLP/HTTP; env TRICKLE_RELAY_OTLP_TRACES_ENDPOINT…)")
    var tracingOptions: TracingOptions

    func validate() throws {
        if let eventsURL {
            try validateEventsURL(eventsURL)
            guard let sessionID, !sessionID.isEmpty else { throw ValidationError("--events-url needs --session-id") }
        } else {
            guard self.listenAddress != nil else { throw ValidationError("--listen must be HOST:PORT, got \(self.listen)") }
            guard self.sessionID == nil else { throw ValidationError("--session-id goes with --events-url (single-session mode)") }
        }
        if let token, TextParsing.trimmed(token).isEmpty {
            throw ValidationError("--token must not be empty (an empty token would let anyone in); use --token-file FILE")
        }
        if self.token != nil && self.tokenFile != nil { throw ValidationError("give --token or --token-file, not both") }
        _ = try Environment.secret(file: self.tokenFile, flag: "--token-file", variables: [])
        if let telemetry, TelemetryConsent.parse(telemetry) == nil {
            throw ValidationError("--telemetry must be on or off, got \(telemetry)")
        }
        guard self.maxQueueEvents > 0, self.maxQueueBytes > 0 else { throw ValidationError("queue bounds must be positive") }
        guard (1...100_000).contains(self.maxSessions) else { throw ValidationError("--max-sessions must be 1…100000, got \(self.maxSessions)") }
        try SecondsFlag.check(self.segmentWindow, "--segment-window")
        try SecondsFlag.check(self.flushTimeout, "--flush-timeout")
        try SecondsFlag.check(self.heartbeatInterval, "--heartbeat-interval")
        try SecondsFlag.check(self.closeLinger, "--close-linger", allowsZero: true)
        guard self.closeLinger >= 0, self.closeLinger < self.flushTimeout else {
            throw ValidationError("--close-linger must be at least 0 and shorter than --flush-timeout (\(self.flushTimeout) s), got \(self.closeLinger)")
        }
        guard self.segmentWindow > 0, self.flushTimeout > 0, self.heartbeatInterval > 0 else {
            throw ValidationError("--segment-window, --flush-timeout and --heartbeat-interval must be positive")
        }
        _ = try self.tracingOptions.configuration(role: "runner")
    }

    var listenAddress: ListenAddress? { ListenAddress(self.listen) }

    func run() async throws {
        let processStart = ContinuousClock.now
        let logger = self.logging.makeLogger(label: "trickle-relay.runner")
        let consent = TelemetryConsent(flag: self.telemetry.flatMap(TelemetryConsent.parse), environment: ProcessInfo.processInfo.environment)
        logger.info("telemetry consent", metadata: ["telemetry.enabled": "\(consent.isEnabled)", "telemetry.reason": "\(consent.reason)"])
        let tracing = try self.tracingOptions.makeTracing(role: "runner", tls: self.tls, logger: logger)
        // Before any part of the pipeline creates its metric objects.
        let exposition = ProcessMetrics.bootstrap()
        var sinkDefaults = TrickleEventsSink.Configuration(
            identity: SessionIdentity(sessionID: self.sessionID ?? "", connectionID: self.connectionID, clientSource: self.clientSource),
            isTelemetryEnabled: consent.isEnabled,
            scrubs: !self.noScrub,
            maximumQueuedEvents: self.maxQueueEvents,
            maximumQueuedBytes: self.maxQueueBytes
        )
        sinkDefaults.tracer = tracing?.tracer
        var writer = JSONLWriter.Configuration(segmentWindow: SecondsFlag.duration(self.segmentWindow))
        writer.publisher.lingerBeforeDelete = SecondsFlag.duration(self.closeLinger)
        guard let eventsURL else {
            try await self.runAgent(
                sinkDefaults: sinkDefaults,
                writer: writer,
                tracing: tracing,
                exposition: exposition,
                logger: logger,
                processStart: processStart
            )
            return
        }
        let url = try TrickleChannelURL(eventsURL)
        let configuration = SessionRelay.Configuration(
            eventsURL: url,
            sink: sinkDefaults,
            writer: writer,
            flushTimeout: SecondsFlag.duration(self.flushTimeout)
        )
        let input = RelayMutex(LineIngest.Counts())
        let summary = try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(tls: try self.tls.configuration())) { client in
            let relay = SessionRelay(configuration: configuration, httpClient: client, logger: logger)
            // The process's one service group; tracing first, so it is shut down last (after the last spans).
            let group = ServiceGroup(
                configuration: .init(
                    services: (tracing.map { [.init(service: $0.service)] } ?? []) + [
                        .init(service: relay),
                        .init(
                            service: StandardInputPump(relay: relay, logger: logger) { counts in input.withLock { $0 = counts } },
                            successTerminationBehavior: .gracefullyShutdownGroup
                        ),
                        .init(
                            service: RelaySelfTelemetry(
                                relay: relay,
                                heartbeatInterval: SecondsFlag.duration(self.heartbeatInterval),
                                processStart: processStart
                            )
                        ),
                    ],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
            return relay.summary
        }
        let sink = summary.sink
        let lines = input.withLock { $0 }
        logger.debug("session counters", metadata: ["sink": "\(sink)", "input": "\(lines)"])
        StandardError.write(SessionReport(summary: summary, input: lines).text)
        if (sink.writerErrors > 0 || sink.lost > 0 || sink.controlLost > 0) && sink.relayed == 0 && summary.segments == 0 {
            StandardError.write(
                "nothing could be published to \(url): "
                    + (summary.connectionProblem ?? "is the trickle server up and the channel there?")
            )
            throw ExitCode(1)
        }
    }
}

extension RunnerCommand {

    /// Multi-session mode: the ingest API until SIGTERM, then every session is flushed.
    func runAgent(
        sinkDefaults: TrickleEventsSink.Configuration,
        writer: JSONLWriter.Configuration,
        tracing: RelayTracing?,
        exposition: MetricsExposition,
        logger: Logger,
        processStart: ContinuousClock.Instant
    ) async throws {
        let address = self.listenAddress!  // checked in validate()
        let token = (try self.token ?? Environment.secret(file: self.tokenFile, flag: "--token-file", variables: ["TRICKLE_RELAY_TOKEN"])).map(BearerToken.init)
        // Each session holds two connections to its trickle server (the segment being written and the next one,
        // preconnected): a pool smaller than that would make sessions wait on each other's connections.
        FileDescriptorLimit.raiseToMaximum()
        let connectionsPerHost = 2 * self.maxSessions + 16
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(connectionsPerHost: connectionsPerHost, tls: try self.tls.configuration())) { client in
            let agent: RunnerAgent
            var configuration = RunnerAgent.Configuration(
                host: address.host,
                port: address.port,
                token: token,
                sinkDefaults: sinkDefaults,
                writer: writer,
                flushTimeout: SecondsFlag.duration(self.flushTimeout),
                heartbeatInterval: SecondsFlag.duration(self.heartbeatInterval)
            )
            configuration.maximumSessions = self.maxSessions
            configuration.metricsExposition = exposition
            do {
                agent = try RunnerAgent(
                    configuration: configuration,
                    httpClient: client,
                    logger: logger,
                    processStart: processStart
                )
            } catch {
                StandardError.write("trickle-relay runner: \(error)")
                throw ExitCode(2)
            }
            let group = ServiceGroup(
                configuration: .init(
                    services: (tracing.map { [.init(service: $0.service)] } ?? []) + [.init(service: agent)],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            do {
                try await group.run()
            } catch where !agent.isListening {
                let failure = ListenFailure(host: address.host, port: address.port, error: error, advice: "is another agent running? pick another --listen port")
                StandardError.write("trickle-relay runner: the ingest API \(failure)")
                throw ExitCode(2)
            }
        }
    }
}
