public import NIOCore
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// Feeds a byte stream of JSON Lines (the runner app's stdin) into a session: telemetry to the sink, control
/// events through the lossless path, bad lines counted and reported.
public struct LineIngest: Sendable {
    /// What an ingest saw.
    public struct Counts: Sendable, Hashable, Codable {
        public var lines = 0
        public var telemetry = 0
        public var control = 0
        public var invalid = 0
        public var oversize = 0
        public init() {}
    }

    /// A bad input line, for the caller to report (never its payload).
    public struct Problem: Sendable {
        public var lineNumber: Int
        /// A stable name of the kind of problem: `line_too_large` or `invalid_line` (for throttled logs).
        public var kind: String
        public var reason: String
    }

    public let maximumLineBytes: Int

    public init(maximumLineBytes: Int = 5 * 1024 * 1024) {
        self.maximumLineBytes = maximumLineBytes
    }

    /// Reads `input` to its end.
    ///
    /// - Parameters:
    ///   - input: Chunks of JSONL.
    ///   - sink: Where telemetry and control events go.
    ///   - onProblem: Called for every line that is skipped.
    ///   - onCounts: Called with the counts so far after every line, so a caller stopped part-way (SIGTERM)
    ///     still reports what was read.
    public func run(
        _ input: some AsyncSequence<ByteBuffer, any Error>,
        into sink: TrickleEventsSink,
        onProblem: (Problem) -> Void = { _ in },
        onCounts: (Counts) -> Void = { _ in }
    ) async throws -> Counts {
        var counts = Counts()
        try await JSONLPump.forEachFrame(in: input, maximumLineBytes: self.maximumLineBytes) { frame in
            counts.lines += 1
            switch frame {
            case .oversizeLine(let number, let bytes):
                counts.oversize += 1
                onProblem(Problem(lineNumber: number, kind: "line_too_large", reason: "line of \(bytes) bytes exceeds the \(self.maximumLineBytes)-byte cap"))
            case .line(let line, let number, _):
                switch RunnerLine(line) {
                case .telemetry(let event):
                    counts.telemetry += 1
                    sink.emit(event)
                case .control(let control):
                    counts.control += 1
                    await sink.sendControl(control)
                case .invalid(let reason):
                    counts.invalid += 1
                    onProblem(Problem(lineNumber: number, kind: "invalid_line", reason: reason))
                }
            }
            onCounts(counts)
        }
        return counts
    }
}
