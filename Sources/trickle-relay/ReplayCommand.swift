import ArgumentParser
import ClientEgress
import AsyncHTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import Logging
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// `trickle-relay replay`: recorded events-channel JSONL through the client's dispatcher, for debugging.
struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay recorded events-channel JSONL (or captured segment files) through the dispatcher into a sink.",
        discussion: """
            Each FILE is read as one segment: several files are consecutive segments, and a line never joins \
            across files. Telemetry goes to the sink (default: the log sink on standard error); the summary \
            lists events per type and per data.type, every skipped line with file:line and reason, oversize \
            lines, duplicate envelope ids, and the time span the envelopes cover.

            --speed realtime (or a factor such as 10) paces telemetry by the envelopes' own timestamps; the \
            default, max, replays as fast as possible. --to URL republishes the recording's lines, unchanged, onto \
            a live trickle channel instead (to reproduce a session against a client under debug). A progress \
            line is shown on standard error when it is a terminal and the input is larger than 4 MB.

            Exit status: 0 replayed (skipped lines are reported, not fatal); 3 --strict and a bad line was \
            found (the first is named); 4 a file could not be read; 5 the sink could not take every event (a full \
            disk: the summary counts them); 64 bad usage; 130 stopped by SIGTERM or SIGINT (the summary of what \
            was replayed is printed first).

            Examples:
              trickle-relay replay fixtures/recorded-session.jsonl        # a recorded events channel
              trickle-relay replay --summary json --sink null capture/seg-*.jsonl
            """
    )

    @Argument(help: "Recorded JSONL files, in order.")
    var files: [String]

    @Option(help: "Where telemetry goes: log, file:PATH, or null.")
    var sink = "log"

    @Option(help: "How to print the summary: text or json.")
    var summary: SummaryFormat = .text

    /// `--summary`.
    enum SummaryFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Option(help: "Only dispatch these top-level types (comma-separated), e.g. telemetry,logs.")
    var types: String?

    @Flag(help: "Stop at the first malformed line, name it, and exit 3.")
    var strict = false

    @Option(help: "Lines longer than this many bytes are skipped and reported as oversize.")
    var maxLineBytes = 5 * 1024 * 1024

    @Option(help: "Pace: max, realtime, or a speed-up factor (by the envelopes' timestamps).")
    var speed = "max"

    @Option(help: "Republish the recording onto this live channel (http(s)://HOST[:PORT]/CHANNEL) instead of a sink.")
    var to: String?

    @OptionGroup var logging: LoggingOptions

    @OptionGroup(title: "TLS (outbound https://: trust and client certificate)") var tls: TLSOptions

    func validate() throws {
        guard !self.files.isEmpty else { throw ValidationError("name at least one FILE to replay") }
        switch try? EgressSinkSpecification(parsing: self.sink) {
        case .log, .null, .file: break
        default: throw ValidationError("--sink must be log, null or file:PATH, got \(self.sink)")
        }
        guard self.maxLineBytes > 0 else { throw ValidationError("--max-line-bytes must be positive, got \(self.maxLineBytes)") }
        guard ReplayPacer.Speed(self.speed) != nil else {
            throw ValidationError("--speed must be max, realtime or a positive factor, got \(self.speed)")
        }
        if let to { try validateChannelURL(to) }
    }

    func run() async throws {
        var options = self.logging
        options.logLevel = options.logLevel ?? "warning"
        let logger = options.makeLogger(label: "trickle-relay.replay")
        let configuration = Replayer.Configuration(
            files: self.files,
            maximumLineBytes: self.maxLineBytes,
            types: self.types.map { Set($0.split(separator: ",").map { TextParsing.trimmed($0) }) },
            strict: self.strict,
            speed: ReplayPacer.Speed(self.speed) ?? .max  // checked in validate()
        )
        let progress = ReplayProgress(files: self.files, isShown: isatty(2) == 1) { StandardError.writeRaw($0) }
        let sink: any EgressSink
        if let to {
            sink = NullSink()
            try await self.republish(Replayer(configuration: configuration, sink: sink, progress: progress, logger: logger), to: try TrickleChannelURL(to), logger: logger)
            return
        }
        do {
            sink = try EgressSinkSpecification(parsing: self.sink).makeSink(httpClient: nil, logger: logger) { StandardError.writeRaw($0) }
        } catch {
            StandardError.write("trickle-relay replay: \(error)")
            throw ExitCode(4)
        }
        let replayer = Replayer(configuration: configuration, sink: sink, progress: progress, logger: logger)
        // SIGTERM/SIGINT stop the replay between chunks; the summary of what was replayed is still printed.
        let interrupted: Bool
        do {
            interrupted = try await runInterruptibly(logger: logger) { try await replayer.run() }
        } catch let error as ReplayError {
            _ = await replayer.finish()
            StandardError.write(error.code == .strictStop ? error.message : "trickle-relay replay: \(error.message)")
            throw ExitCode(error.code == .strictStop ? 3 : 4)
        }
        if interrupted { StandardError.write("trickle-relay replay: interrupted by a signal; the summary covers what was replayed") }
        let summary = await replayer.finish()
        if self.summary == .json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            StandardOutput.write(String(decoding: try encoder.encode(summary), as: UTF8.self) + "\n")
        } else {
            StandardOutput.write(summary.text)
        }
        if interrupted { throw ExitCode(interruptedExitStatus) }
        if summary.sinkFailedEvents > 0 { throw ExitCode(5) }
    }

    /// `--to`: the recording's lines go, unchanged, onto a live channel.
    func republish(_ replayer: Replayer, to url: TrickleChannelURL, logger: Logger) async throws {
        let result = try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(tls: try self.tls.configuration())) { client in
            let writer = JSONLWriter(url: url, httpClient: client, configuration: .init(segmentWindow: .seconds(1)), logger: logger)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                do {
                    let result = try await replayer.republish(onto: writer)
                    try await writer.close()
                    try await group.waitForAll()
                    return result
                } catch let error as ReplayError {
                    group.cancelAll()
                    StandardError.write("trickle-relay replay: \(error.message)")
                    throw ExitCode(4)
                }
            }
        }
        for refusal in result.refusals { StandardError.write(refusal) }
        StandardError.write("republished \(result.written) lines to \(url); \(result.refused) not republished")
    }
}
