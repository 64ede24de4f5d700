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
            ends cleanly, with a summary on standard error, when the channel ends (closed, or 404).

            Sinks: log (one TELEMETRY line per envelope, on standard error), file:PATH (append the envelopes as \
            JSONL), http(s)://… (the HTTP metrics reporter: batches to that endpoint with a bearer key from \
            --api-key-file, TRICKLE_RELAY_METRICS_API_KEY or SCOPE_CLOUD_API_KEY), null (count only). Without \
            --sink: the metrics reporter when TRICKLE_RELAY_METRICS_URL (or DAYDREAM_METRICS_URL) and a key are \
            set, else the log sink. Kafka, the disk spool and the SSE stream are not built yet.

            Start positions: latest (replay the most recent segment, then follow), next, or a seq number.

            Example:
              trickle-relay client --events-url http://127.0.0.1:2939/sess-1-events --sink file:telemetry.jsonl
            """
    )

    @Option(help: "The session's events channel: http(s)://HOST[:PORT]/[BASE/]CHANNEL.")
    var eventsURL: String

    @Option(help: "Where telemetry goes: log, file:PATH, http(s)://… (metrics reporter), or null. Default: from the environment.")
    var sink: String?

    @Option(help: "File holding the metrics API key (re-read on every request, so a refreshed key resumes after a 401).")
    var apiKeyFile: String?

    @Option(help: "Where to start reading: latest, next, or a seq number ≥ 0.")
    var start = "latest"

    @Flag(help: "Do not print non-telemetry events on standard output.")
    var quiet = false

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        try validateEventsURL(self.eventsURL)
        if let sink {
            let isHTTP = sink.hasPrefix("http://") || sink.hasPrefix("https://")
            guard sink == "log" || sink == "null" || (sink.hasPrefix("file:") && sink.count > 5) || isHTTP else {
                throw ValidationError("--sink must be log, null, file:PATH or http(s)://… (kafka is not built yet), got \(sink)")
            }
            if isHTTP, self.apiKey() == nil {
                throw ValidationError("the metrics sink needs an API key: --api-key-file, TRICKLE_RELAY_METRICS_API_KEY or SCOPE_CLOUD_API_KEY")
            }
        }
        guard SubscribeCommand.startPosition(self.start) != nil else {
            throw ValidationError("--start must be latest, next or a seq number ≥ 0, got \(self.start)")
        }
    }

    /// The API key, read now: the file if given, else the environment.
    func apiKey() -> String? {
        if let apiKeyFile {
            return (try? String(contentsOfFile: apiKeyFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return Environment.value("TRICKLE_RELAY_METRICS_API_KEY") ?? Environment.value("SCOPE_CLOUD_API_KEY")
    }

    /// The sink named by --sink, or chosen from the environment (metrics reporter, else log).
    var sinkSpecification: String {
        if let sink { return sink }
        if let url = Environment.value("TRICKLE_RELAY_METRICS_URL") ?? Environment.value("DAYDREAM_METRICS_URL"), self.apiKey() != nil {
            return url
        }
        return "log"
    }

    func makeSink(client: HTTPClient, logger: Logger) throws -> any EgressSink {
        let specification = self.sinkSpecification
        switch specification {
        case "null": return NullSink()
        case "log": return LogSink { StandardError.writeRaw($0) }
        case let url where url.hasPrefix("http://") || url.hasPrefix("https://"):
            let command = self
            return MetricsReporter(configuration: .init(url: url), httpClient: client, apiKey: { command.apiKey() }, logger: logger)
        default: return try FileSink(path: String(specification.dropFirst(5)))
        }
    }

    func run() async throws {
        let logger = self.logging.makeLogger(label: "trickle-relay.client")
        let url = try TrickleChannelURL(self.eventsURL)
        let quiet = self.quiet
        let start = SubscribeCommand.startPosition(self.start) ?? .latest
        if Environment.value("KAFKA_BOOTSTRAP_SERVERS") != nil, self.sink == nil {
            logger.warning("KAFKA_BOOTSTRAP_SERVERS is set but the Kafka sink is not built yet; using \(self.sinkSpecification)")
        }
        let (end, counters) = try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            let sink: any EgressSink
            do {
                sink = try self.makeSink(client: client, logger: logger)
            } catch {
                StandardError.write("trickle-relay client: \(error)")
                throw ExitCode(2)
            }
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            if let reporter = sink as? MetricsReporter {
                services.append(.init(service: reporter, successTerminationBehavior: .gracefullyShutdownGroup))
            }
            let daemon = ClientDaemon(
                eventsURL: url,
                httpClient: client,
                reader: .init(subscriber: .init(start: start)),
                sink: sink,
                logger: logger
            ) { event in
                guard !quiet else { return }
                var line = event.line
                line.writeInteger(UInt8(ascii: "\n"))
                StandardOutput.write(line)
            }
            services.append(.init(service: daemon, successTerminationBehavior: .gracefullyShutdownGroup))
            let group = ServiceGroup(
                configuration: .init(
                    services: services,
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
            return (daemon.endOfStream, daemon.dispatcher.stats)
        }
        let ending = end.map { $0 == .closed ? "the channel was closed" : "the channel does not exist (404)" } ?? "stopped"
        StandardError.write(
            "client ended (\(ending)): \(counters.lines) lines, \(counters.telemetry) telemetry to the \(TrickleChannelURL.redacted(self.sinkSpecification)) sink, malformed \(counters.malformed), non-object \(counters.nonObject), telemetry without an object event \(counters.telemetryWithoutObjectEvent), oversize \(counters.oversize), sink failures \(counters.sinkFailures), segments lost \(counters.segmentsLost)"
        )
    }
}
