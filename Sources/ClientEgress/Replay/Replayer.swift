#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
public import Logging
import NIOCore
import Synchronization
public import TrickleProtocol
import TrickleRelaySupport

/// Replays recorded events-channel JSONL: each file is one segment, read in order through the client's
/// ``EventDispatcher`` into a sink (``run()``), or republished line for line onto a live channel
/// (``republish(onto:)``). What was replayed is summarised by ``finish()`` even when the replay was stopped
/// part-way (a signal cancels ``run()`` between chunks).
public final class Replayer: Sendable {
    /// What to replay and how.
    public struct Configuration: Sendable {
        /// Recorded JSONL files, in order; each is one segment (a line never joins across files).
        public var files: [String]
        /// Lines longer than this are skipped and counted as oversize. Default 5 MiB.
        public var maximumLineBytes: Int
        /// Only these top-level types are dispatched (`nil`: all).
        public var types: Set<String>?
        /// Stop at the first skipped line (``ReplayError/Code/strictStop``).
        public var strict: Bool
        /// Pace telemetry by the envelopes' timestamps. Default `.max` (as fast as possible).
        public var speed: ReplayPacer.Speed

        public init(
            files: [String],
            maximumLineBytes: Int = 5 * 1024 * 1024,
            types: Set<String>? = nil,
            strict: Bool = false,
            speed: ReplayPacer.Speed = .max
        ) {
            self.files = files
            self.maximumLineBytes = maximumLineBytes
            self.types = types
            self.strict = strict
            self.speed = speed
        }
    }

    public let configuration: Configuration
    /// Counts the bytes read, for a progress line.
    public let progress: ReplayProgress
    private let sink: ReplayObservingSink
    private let problems = ReplayProblems()
    private let currentFile = CurrentFile()
    private let dispatcher: EventDispatcher

    /// - Parameters:
    ///   - sink: Where telemetry goes (wrapped to observe duplicates and time span, and paced when asked).
    ///   - progress: The progress line's counter (``ReplayProgress/silent`` for none).
    public init(configuration: Configuration, sink: any EgressSink, progress: ReplayProgress = .silent, logger: Logger) {
        self.configuration = configuration
        self.progress = progress
        self.sink = ReplayObservingSink(
            forwardingTo: configuration.speed == .max ? sink : PacedSink(forwardingTo: sink, speed: configuration.speed)
        )
        let problems = self.problems
        let currentFile = self.currentFile
        self.dispatcher = EventDispatcher(
            sink: self.sink,
            logger: logger,
            types: configuration.types,
            countsDataTypes: false,  // the observing sink counts them, in the walk that reads ids and timestamps
            onProblem: { problem in
                let file = currentFile.name.withLock { $0 }
                problems.add(ReplaySummary.Problem(file: file, line: problem.lineNumber, reason: problem.reason, detail: problem.detail))
            }
        )
    }

    /// Dispatches every file into the sink, in order.
    /// - Throws: ``ReplayError`` (a file cannot be read; `strict` and a bad line), or `CancellationError`.
    public func run() async throws {
        for file in self.configuration.files {
            self.currentFile.name.withLock { $0 = file }
            try await Self.withOpenFile(file) { chunks in
                try await self.dispatcher.run(
                    bytes: self.progress.counting(chunks),
                    source: file,
                    maximumLineBytes: self.configuration.maximumLineBytes
                )
            }
            if self.configuration.strict, let first = self.problems.first {
                throw ReplayError(.strictStop, "\(first.file):\(first.line.map(String.init) ?? "-"): \(first.reason) \(first.detail)")
            }
        }
    }

    /// Shuts the sink down (flushing it) and summarises what was replayed so far.
    public func finish() async -> ReplaySummary {
        self.progress.finish()
        await self.sink.shutdown()
        return ReplaySummary(files: self.configuration.files, counters: self.dispatcher.stats, problems: self.problems, observations: self.sink)
    }

    /// What ``republish(onto:)`` did.
    public struct Republished: Sendable, Hashable {
        /// Lines written onto the channel.
        public var written = 0
        /// Lines not republished: oversize, an unterminated last line (maybe truncated), or refused by the writer.
        public var refused = 0
        /// The first few refusals, `file:line: reason`.
        public var refusals: [String] = []
    }

    /// Writes the recording's lines, unchanged, onto `writer` (which the caller runs and closes), paced by the
    /// envelopes' timestamps when a speed was asked for.
    /// - Throws: ``ReplayError`` when a file cannot be read, or `CancellationError`.
    public func republish(onto writer: JSONLWriter) async throws -> Republished {
        var result = Republished()
        var pacer = ReplayPacer(speed: self.configuration.speed)
        for file in self.configuration.files {
            try await Self.withOpenFile(file) { chunks in
                try await JSONLPump.forEachFrame(in: self.progress.counting(chunks), maximumLineBytes: self.configuration.maximumLineBytes) { frame in
                    guard case .line(let line, let number, isTerminated: true) = frame else {
                        result.refused += 1
                        return
                    }
                    try await pacer.wait(forTimestamp: Self.telemetryTimestamp(line))
                    do {
                        try await writer.write(line: line)
                        result.written += 1
                    } catch {
                        result.refused += 1
                        if result.refusals.count < 20 { result.refusals.append("\(file):\(number): not republished: \(error)") }
                    }
                }
            }
        }
        self.progress.finish()
        return result
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

    private static func withOpenFile(_ file: String, _ body: (ReadAheadFile.Chunks) async throws -> Void) async throws {
        let opened: ReadAheadFile
        do {
            // 1 MiB reads, one ahead: the next chunk comes out of the page cache while this one is parsed.
            opened = try ReadAheadFile(path: file, chunkSize: 1 << 20)
        } catch {
            throw ReplayError(.unreadable, "cannot read \(file): \(String(cString: strerror(error.errno)))")
        }
        defer { opened.close() }
        do {
            try await body(opened.chunks)
        } catch let error as FileChunks.ReadError {
            throw ReplayError(.unreadable, "cannot read \(file): \(error)")
        }
    }
}

/// The file being replayed, for locating problems.
private final class CurrentFile: Sendable {
    let name = RelayMutex("")
}

/// Why a replay stopped.
public struct ReplayError: Error, Sendable, CustomStringConvertible {
    /// What kind of stop this is (callers branch on it: exit 4 or 3).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// A file could not be opened or read.
        public static let unreadable = Code("unreadable")
        /// `strict` and a line was skipped.
        public static let strictStop = Code("strictStop")
        public var description: String { self.name }
    }

    public var code: Code
    /// What happened, naming the file (and line).
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { self.message }
}
