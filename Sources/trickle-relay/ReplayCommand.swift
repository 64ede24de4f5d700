import ArgumentParser
import ClientEgress
import Foundation
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

            Exit status: 0 replayed (skipped lines are reported, not fatal); 3 --strict and a bad line was \
            found (the first is named); 4 a file could not be read; 64 bad usage.

            Examples:
              trickle-relay replay fixtures/clean-session.jsonl
              trickle-relay replay --summary json --sink null capture/seg-*.jsonl
            """
    )

    @Argument(help: "Recorded JSONL files, in order.")
    var files: [String]

    @Option(help: "Where telemetry goes: log, file:PATH, or null.")
    var sink = "log"

    @Option(help: "How to print the summary: text or json.")
    var summary = "text"

    @Option(help: "Only dispatch these top-level types (comma-separated), e.g. telemetry,logs.")
    var types: String?

    @Flag(help: "Stop at the first malformed line, name it, and exit 3.")
    var strict = false

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard !self.files.isEmpty else { throw ValidationError("name at least one FILE to replay") }
        guard self.summary == "text" || self.summary == "json" else {
            throw ValidationError("--summary must be text or json, got \(self.summary)")
        }
        guard self.sink == "log" || self.sink == "null" || (self.sink.hasPrefix("file:") && self.sink.count > 5) else {
            throw ValidationError("--sink must be log, null or file:PATH, got \(self.sink)")
        }
    }

    func run() async throws {
        var options = self.logging
        options.logLevel = options.logLevel ?? "warning"
        let logger = options.makeLogger(label: "trickle-relay.replay")
        let inner: any EgressSink
        switch self.sink {
        case "null": inner = NullSink()
        case "log": inner = LogSink { StandardError.writeRaw($0) }
        default:
            do {
                inner = try FileSink(path: String(self.sink.dropFirst(5)))
            } catch {
                StandardError.write("trickle-relay replay: \(error)")
                throw ExitCode(4)
            }
        }
        let sink = ReplayObservingSink(forwardingTo: inner)
        let problems = Mutex<[ReplaySummary.Problem]>([])
        let currentFile = Mutex("")
        let strict = self.strict
        let dispatcher = EventDispatcher(
            sink: sink,
            logger: logger,
            types: self.types.map { Set($0.split(separator: ",").map { String($0.trimmingCharacters(in: .whitespaces)) }) },
            countsDataTypes: true,
            onProblem: { problem in
                let file = currentFile.withLock { $0 }
                let located = ReplaySummary.Problem(file: file, line: problem.lineNumber, reason: problem.reason, detail: problem.detail)
                problems.withLock { $0.append(located) }
            }
        )
        for file in self.files {
            currentFile.withLock { $0 = file }
            let descriptor = open(file, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                StandardError.write("trickle-relay replay: cannot read \(file): \(String(cString: strerror(errno)))")
                throw ExitCode(4)
            }
            defer { close(descriptor) }
            try await dispatcher.run(bytes: StandardInputChunks(descriptor: descriptor), source: file)
            if strict, let first = problems.withLock({ $0.first }) {
                StandardError.write("\(first.file):\(first.line.map(String.init) ?? "-"): \(first.reason) \(first.detail)")
                throw ExitCode(3)
            }
        }
        await sink.shutdown()
        var summary = ReplaySummary()
        let counters = dispatcher.stats
        summary.files = self.files
        summary.lines = counters.lines
        summary.telemetry = counters.telemetry
        summary.byType = counters.byType
        summary.byDataType = counters.byDataType
        summary.malformed = counters.malformed
        summary.nonObject = counters.nonObject
        summary.telemetryWithoutObjectEvent = counters.telemetryWithoutObjectEvent
        summary.oversize = counters.oversize
        summary.problems = problems.withLock { $0 }
        let observations = sink.observations
        summary.duplicateIDs = observations.duplicates
        summary.firstTimestamp = observations.first
        summary.lastTimestamp = observations.last
        if self.summary == "json" {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            StandardOutput.write(String(decoding: try encoder.encode(summary), as: UTF8.self) + "\n")
        } else {
            StandardOutput.write(Self.text(summary))
        }
    }

    static func text(_ summary: ReplaySummary) -> String {
        var text = "replayed \(summary.files.count) file(s): \(summary.lines) lines, \(summary.telemetry) telemetry\n"
        text += "by type: " + summary.byType.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "\n"
        text += "by data.type: " + summary.byDataType.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "\n"
        text += "skipped: malformed \(summary.malformed), non-object \(summary.nonObject), telemetry without an object event \(summary.telemetryWithoutObjectEvent), oversize \(summary.oversize)\n"
        for problem in summary.problems {
            text += "  \(problem.file):\(problem.line.map(String.init) ?? "-"): \(problem.reason)\(problem.detail.isEmpty ? "" : " (\(problem.detail))")\n"
        }
        text += "duplicate ids: \(summary.duplicateIDs.isEmpty ? "none" : summary.duplicateIDs.joined(separator: ", "))\n"
        text += "time span: \(Double(summary.spanMilliseconds) / 1000) s\n"
        return text
    }
}
