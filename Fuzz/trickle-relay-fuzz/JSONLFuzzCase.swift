import ClientEgress
import Dispatch
import Logging
import NIOCore
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// The JSONL reader and the dispatcher under arbitrary bytes.
///
/// The input's first byte picks how the stream is cut into chunks; the rest is the stream, followed by a newline
/// and a known-good telemetry line (the sentinel). Invariants:
/// - parsing is independent of how the bytes are chunked (whole vs. cut at fuzzer-chosen sizes);
/// - every delivered line is within the line cap and holds no newline;
/// - whatever garbage came before, the sentinel is delivered last, byte for byte, and the dispatcher hands its
///   envelope to the sink unchanged;
/// - the dispatcher's counters add up (every line routed or skipped exactly once).
struct JSONLFuzzCase {
    static let maximumLineBytes = 512
    static let sentinelEnvelope = #"{"id":"fuzz-sentinel","type":"stream_trace","data":{"type":"fuzz","n":1}}"#
    static let sentinelLine = #"{"type":"telemetry","event":"# + sentinelEnvelope + "}"

    let chunkPattern: [Int]
    let stream: [UInt8]

    init(input: [UInt8]) {
        let selector = Int(input[0])
        // Chunk sizes cycle through 1…(selector % 61 + 1) and the next bytes of the input (all ≥ 1).
        var pattern = [selector % 61 + 1]
        for byte in input.dropFirst().prefix(selector % 5) { pattern.append(Int(byte) % 97 + 1) }
        self.chunkPattern = pattern
        // Under the 1 MiB segment cap whatever the fuzzer (or a seed file) gives: the sentinel must fit.
        self.stream = Array(input.dropFirst().prefix(512 * 1024)) + Array("\n\(Self.sentinelLine)\n".utf8)
    }

    func check() {
        let whole = Self.parse([ByteBuffer(bytes: self.stream)])
        let chunked = Self.parse(self.chunks())
        fuzzRequire(whole == chunked, "chunking changed the result: \(whole.count) vs \(chunked.count) items")
        for item in whole {
            if case .line(let bytes, _) = item {
                fuzzRequire(bytes.count <= Self.maximumLineBytes, "a \(bytes.count)-byte line passed the \(Self.maximumLineBytes)-byte cap")
                fuzzRequire(!bytes.contains(UInt8(ascii: "\n")), "a delivered line holds a newline")
            }
        }
        guard case .line(let last, _)? = whole.last else {
            fuzzRequire(false, "the sentinel line was not delivered after \(self.stream.count) bytes")
            return
        }
        fuzzRequire(last == Array(Self.sentinelLine.utf8), "the last line is not the sentinel")
        self.checkDispatch()
    }

    private func chunks() -> [ByteBuffer] {
        var chunks: [ByteBuffer] = []
        var offset = 0
        var index = 0
        while offset < self.stream.count {
            let size = min(self.chunkPattern[index % self.chunkPattern.count], self.stream.count - offset)
            chunks.append(ByteBuffer(bytes: self.stream[offset..<(offset + size)]))
            offset += size
            index += 1
        }
        return chunks
    }

    /// What the parser produced, in a comparable form.
    enum Parsed: Equatable {
        case line([UInt8], number: Int)
        case diagnostic(String, line: Int?, bytes: Int)
    }

    static func parse(_ chunks: [ByteBuffer]) -> [Parsed] {
        var parser = JSONLSegmentParser(source: "fuzz", seq: 0, maximumSegmentBytes: 1 << 20, maximumLineBytes: Self.maximumLineBytes)
        var items: [JSONLSegmentParser.Item] = []
        for chunk in chunks { parser.feed(chunk, into: &items) }
        parser.finishSegment(into: &items)
        return items.map { item in
            switch item {
            case .line(let line): .line(Array(line.bytes.readableBytesView), number: line.lineNumber)
            case .diagnostic(let diagnostic): .diagnostic("\(diagnostic.reason)", line: diagnostic.lineNumber, bytes: diagnostic.bytes)
            }
        }
    }

    /// The dispatcher's own path over the chunked stream (its scan validates while it routes).
    private func checkDispatch() {
        let sink = RecordingSink()
        let dispatcher = EventDispatcher(sink: sink, logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }))
        // Three chunks cut where the fuzzer says (the parser's chunking is checked above, byte by byte).
        let cuts = [self.chunkPattern[0] * 37 % self.stream.count, self.chunkPattern.last! * 101 % self.stream.count].sorted()
        let chunks = [0..<cuts[0], cuts[0]..<cuts[1], cuts[1]..<self.stream.count].map { ByteBuffer(bytes: self.stream[$0]) }
        blockOn {
            try? await dispatcher.run(bytes: chunks.async, source: "fuzz", maximumLineBytes: Self.maximumLineBytes)
        }
        let records = sink.records
        let stats = dispatcher.stats
        fuzzRequire(records.count == stats.telemetry, "sink got \(records.count) envelopes, counters say \(stats.telemetry)")
        fuzzRequire(
            stats.lines == stats.byType.values.reduce(0, +) + stats.malformed + stats.nonObject + stats.telemetryWithoutObjectEvent
                + stats.oversize,
            "lines \(stats.lines) are not the sum of their routes (\(stats))"
        )
        fuzzRequire(records.last == Array(Self.sentinelEnvelope.utf8), "the sentinel envelope did not reach the sink byte for byte")
    }
}

/// Keeps every envelope it is given.
final class RecordingSink: EgressSink {
    private let stored = RelayMutex<[[UInt8]]>([])
    var records: [[UInt8]] { self.stored.withLock { $0 } }

    func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        let copies = records.map { Array($0.envelope.readableBytesView) }
        self.stored.withLock { $0.append(contentsOf: copies) }
    }

    func forceFlush() async throws {}
    func shutdown() async {}
}

/// Runs async work to its end from libFuzzer's synchronous callback.
func blockOn(_ work: @escaping @Sendable () async -> Void) {
    let done = DispatchSemaphore(value: 0)
    Task {
        await work()
        done.signal()
    }
    done.wait()
}

extension Array where Element: Sendable {
    /// The elements as an async sequence whose iteration can throw (the shape the dispatcher reads).
    var async: AsyncThrowingStream<Element, any Error> {
        AsyncThrowingStream { continuation in
            for element in self { continuation.yield(element) }
            continuation.finish()
        }
    }
}
