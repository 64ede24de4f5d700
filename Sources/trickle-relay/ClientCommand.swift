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
            JSONL), null (count only). The HTTP metrics reporter, Kafka, the disk spool and the SSE stream are \
            not built yet.

            Start positions: latest (replay the most recent segment, then follow), next, or a seq number.

            Example:
              trickle-relay client --events-url http://127.0.0.1:2939/sess-1-events --sink file:telemetry.jsonl
            """
    )

    @Option(help: "The session's events channel: http(s)://HOST[:PORT]/[BASE/]CHANNEL.")
    var eventsURL: String

    @Option(help: "Where telemetry goes: log, file:PATH, or null.")
    var sink = "log"

    @Option(help: "Where to start reading: latest, next, or a seq number ≥ 0.")
    var start = "latest"

    @Flag(help: "Do not print non-telemetry events on standard output.")
    var quiet = false

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        do {
            _ = try TrickleChannelURL(self.eventsURL)
        } catch {
            throw ValidationError("events URL must be http(s)://HOST[:PORT]/[BASE/]CHANNEL, got \(TrickleChannelURL.redacted(self.eventsURL))")
        }
        guard self.sink == "log" || self.sink == "null" || (self.sink.hasPrefix("file:") && self.sink.count > 5) else {
            throw ValidationError("--sink must be log, null or file:PATH (http, https and kafka sinks are not built yet), got \(self.sink)")
        }
        guard SubscribeCommand.startPosition(self.start) != nil else {
            throw ValidationError("--start must be latest, next or a seq number ≥ 0, got \(self.start)")
        }
    }

    func makeSink() throws -> any EgressSink {
        switch self.sink {
        case "null": return NullSink()
        case "log": return LogSink { StandardError.writeRaw($0) }
        default: return try FileSink(path: String(self.sink.dropFirst(5)))
        }
    }

    func run() async throws {
        let logger = self.logging.makeLogger(label: "trickle-relay.client")
        let url = try TrickleChannelURL(self.eventsURL)
        let sink: any EgressSink
        do {
            sink = try self.makeSink()
        } catch {
            StandardError.write("trickle-relay client: \(error)")
            throw ExitCode(2)
        }
        let quiet = self.quiet
        let start = SubscribeCommand.startPosition(self.start) ?? .latest
        let (end, counters) = try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
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
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: daemon, successTerminationBehavior: .gracefullyShutdownGroup)],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
            return (daemon.endOfStream, daemon.dispatcher.stats)
        }
        let ending = end.map { $0 == .closed ? "the channel was closed" : "the channel does not exist (404)" } ?? "stopped"
        StandardError.write(
            "client ended (\(ending)): \(counters.lines) lines, \(counters.telemetry) telemetry to the \(self.sink) sink, malformed \(counters.malformed), non-object \(counters.nonObject), telemetry without an object event \(counters.telemetryWithoutObjectEvent), oversize \(counters.oversize), sink failures \(counters.sinkFailures), segments lost \(counters.segmentsLost)"
        )
    }
}
