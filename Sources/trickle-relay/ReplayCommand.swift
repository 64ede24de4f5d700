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
        let speed = ReplayPacer.Speed(self.speed) ?? .max
        let progress = ReplayProgress(files: self.files)
        if let to {
            try await self.republish(to: try TrickleChannelURL(to), speed: speed, progress: progress, logger: logger)
            return
        }
        let inner: any EgressSink
        do {
            inner = try EgressSinkSpecification(parsing: self.sink).makeSink(httpClient: nil, logger: logger) { StandardError.writeRaw($0) }
        } catch {
            StandardError.write("trickle-relay replay: \(error)")
            throw ExitCode(4)
        }
        let sink = ReplayObservingSink(forwardingTo: speed == .max ? inner : PacedSink(forwardingTo: inner, speed: speed))
        let problems = ReplayProblems()
        let currentFile = Mutex("")
        let strict = self.strict
        let dispatcher = EventDispatcher(
            sink: sink,
            logger: logger,
            types: self.types.map { Set($0.split(separator: ",").map { TextParsing.trimmed($0) }) },
            countsDataTypes: true,
            onProblem: { problem in
                let file = currentFile.withLock { $0 }
                let located = ReplaySummary.Problem(file: file, line: problem.lineNumber, reason: problem.reason, detail: problem.detail)
                problems.add(located)
            }
        )
        let files = self.files
        let maxLineBytes = self.maxLineBytes
        // SIGTERM/SIGINT stop the replay between chunks; the summary of what was replayed is still printed.
        let interrupted = try await runInterruptibly(logger: logger) {
            for file in files {
                currentFile.withLock { $0 = file }
                let descriptor = open(file, O_RDONLY | O_CLOEXEC)
                guard descriptor >= 0 else {
                    StandardError.write("trickle-relay replay: cannot read \(file): \(String(cString: strerror(errno)))")
                    throw ExitCode(4)
                }
                defer { close(descriptor) }
                try await dispatcher.run(
                    bytes: progress.counting(StandardInputChunks(descriptor: descriptor, chunkSize: 1 << 20)),
                    source: file,
                    maximumLineBytes: maxLineBytes
                )
                if strict, let first = problems.first {
                    StandardError.write("\(first.file):\(first.line.map(String.init) ?? "-"): \(first.reason) \(first.detail)")
                    throw ExitCode(3)
                }
            }
        }
        progress.finish()
        if interrupted { StandardError.write("trickle-relay replay: interrupted by a signal; the summary covers what was replayed") }
        await sink.shutdown()
        let summary = ReplaySummary(files: self.files, counters: dispatcher.stats, problems: problems, observations: sink)
        if self.summary == .json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            StandardOutput.write(String(decoding: try encoder.encode(summary), as: UTF8.self) + "\n")
        } else {
            StandardOutput.write(Self.text(summary))
        }
        if interrupted { throw ExitCode(interruptedExitStatus) }
        if summary.sinkFailedEvents > 0 { throw ExitCode(5) }
    }

    /// `--to`: the recording's lines go, unchanged, onto a live channel.
    func republish(to url: TrickleChannelURL, speed: ReplayPacer.Speed, progress: ReplayProgress, logger: Logger) async throws {
        var written = 0
        var refused = 0
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            let writer = JSONLWriter(url: url, httpClient: client, configuration: .init(segmentWindow: .seconds(1)), logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                var pacer = ReplayPacer(speed: speed)
                for file in self.files {
                    let descriptor = open(file, O_RDONLY | O_CLOEXEC)
                    guard descriptor >= 0 else {
                        StandardError.write("trickle-relay replay: cannot read \(file): \(String(cString: strerror(errno)))")
                        throw ExitCode(4)
                    }
                    defer { close(descriptor) }
                    let chunks = progress.counting(StandardInputChunks(descriptor: descriptor, chunkSize: 1 << 20))
                    try await JSONLPump.forEachFrame(in: chunks, maximumLineBytes: self.maxLineBytes) { frame in
                        // An oversize line, or a last line without its newline (maybe truncated), is not republished.
                        guard case .line(let line, let number, isTerminated: true) = frame else {
                            refused += 1
                            return
                        }
                        try await pacer.wait(forTimestamp: Self.telemetryTimestamp(line))
                        do {
                            try await writer.write(line: line)
                            written += 1
                        } catch {
                            refused += 1
                            StandardError.write("\(file):\(number): not republished: \(error)")
                        }
                    }
                }
                try await writer.close()
                try await group.waitForAll()
            }
        }
        progress.finish()
        StandardError.write("republished \(written) lines to \(url); \(refused) not republished")
    }

    /// The envelope timestamp of a `{"type":"telemetry","event":{…}}` line, for pacing.
    static func telemetryTimestamp(_ line: ByteBuffer) -> Int64? {
        var event: Range<Int>?
        line.withUnsafeReadableBytes { bytes in
            _ = try? JSONScanner.scan(bytes) { key, member in
                if key.elementsEqual("event".utf8), member.kind == .object { event = member.range }
            }
        }
        guard let event, let slice = line.getSlice(at: line.readerIndex + event.lowerBound, length: event.count) else { return nil }
        return EnvelopeFields.timestamp(of: slice)
    }

    /// Problems listed in the text summary; the JSON summary lists more, and counts them all.
    static let problemsShownInText = 20

    static func text(_ summary: ReplaySummary) -> String {
        var text = "replayed \(summary.files.count) file(s): \(summary.lines) lines, \(summary.telemetry) telemetry\n"
        text += "by type: " + summary.byType.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "\n"
        text += "by data.type: " + summary.byDataType.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "\n"
        text += "skipped: malformed \(summary.malformed), non-object \(summary.nonObject), telemetry without an object event \(summary.telemetryWithoutObjectEvent), oversize \(summary.oversize)\n"
        if summary.sinkFailures > 0 {
            text += "not delivered: the sink failed \(summary.sinkFailures) batches, \(summary.sinkFailedEvents) telemetry events\n"
        }
        if !summary.problemsByReason.isEmpty {
            text += "skipped by reason: " + summary.problemsByReason.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "\n"
        }
        // The first few in full; a garbage file must not print a garbage-sized summary.
        for problem in summary.problems.prefix(Self.problemsShownInText) {
            text += "  \(problem.file):\(problem.line.map(String.init) ?? "-"): \(problem.reason)\(problem.detail.isEmpty ? "" : " (\(problem.detail))")\n"
        }
        let unshown = summary.problems.count - min(summary.problems.count, Self.problemsShownInText) + summary.problemsNotListed
        if unshown > 0 { text += "  … and \(unshown) more (--summary json lists the first \(ReplaySummary.maximumProblemsListed))\n" }
        if summary.lines > 0, summary.malformed * 2 > summary.lines {
            text += "hint: most lines are not JSON: input must be JSON Lines, one object per line (a pretty-printed file converts with `jq -c . FILE`)\n"
        }
        if summary.duplicates == 0 {
            text += "duplicate ids: none\n"
        } else {
            let shown = summary.duplicateIDs.prefix(5).joined(separator: ", ")
            text += "duplicate ids: \(summary.duplicates) repeats of \(summary.distinctDuplicatedIDs) distinct ids (first: \(shown)\(summary.distinctDuplicatedIDs > 5 ? ", …" : ""))\n"
        }
        text += "time span: \(Double(summary.spanMilliseconds) / 1000) s\n"
        return text
    }
}

/// A progress line on standard error, when it is a terminal and the input is larger than 4 MB.
final class ReplayProgress: Sendable {
    private let total: Int
    private let isShown: Bool
    private let state = Mutex((done: 0, lastShown: ContinuousClock.now))

    init(files: [String]) {
        let total = files.reduce(0) { sum, file in
            var status = stat()
            return sum + (stat(file, &status) == 0 ? Int(status.st_size) : 0)
        }
        self.total = total
        self.isShown = isatty(2) == 1 && total > 4_000_000
    }

    /// Counts the bytes of `chunks` as they are read.
    func counting<Chunks: AsyncSequence<ByteBuffer, any Error>>(_ chunks: Chunks) -> AsyncThrowingMapSequence<Chunks, ByteBuffer> {
        chunks.map { chunk in
            self.add(chunk.readableBytes)
            return chunk
        }
    }

    private func add(_ bytes: Int) {
        guard self.isShown else { return }
        let line: String? = self.state.withLock { state in
            state.done += bytes
            guard ContinuousClock.now - state.lastShown > .milliseconds(200) else { return nil }
            state.lastShown = .now
            let percent = String(100 * state.done / max(self.total, 1))
            let padding = String(repeating: " ", count: max(0, 3 - percent.count))
            return "\rreplay: \(padding)\(percent)% (\(state.done / 1_000_000) of \(self.total / 1_000_000) MB)"
        }
        if let line { StandardError.writeRaw(line) }
    }

    func finish() {
        if self.isShown { StandardError.writeRaw("\r\u{1B}[K") }
    }
}
