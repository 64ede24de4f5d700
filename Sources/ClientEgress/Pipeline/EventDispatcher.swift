public import Logging
public import NIOCore
import CoreMetrics
import Synchronization
public import TrickleProtocol
import TrickleRelaySupport

/// Routes every line of an events channel by its top-level `type`, found without decoding the line:
/// `telemetry` → the raw bytes of the `event` value go to the ``EgressSink``, byte-exact; every other type →
/// local consumers. Bad lines are counted and reported, and the stream goes on (DESIGN.md "Bad input").
public final class EventDispatcher: Sendable {
    /// A line that was skipped, for callers that report them (never its payload).
    public struct Problem: Sendable, Hashable {
        /// The segment (`-1` for a file).
        public var seq: Int
        /// The line number, when the problem is about a line.
        public var lineNumber: Int?
        /// `malformed_json`, `invalid_utf8`, `not_an_object`, `telemetry_without_object_event`, `line_too_large`,
        /// `truncated_line`, …
        public var reason: String
        /// Details, e.g. the JSON syntax error.
        public var detail: String
    }

    /// A non-telemetry line for local consumers (stdout JSONL, the SSE stream, a callback).
    public struct LocalEvent: Sendable {
        /// The top-level `type` (escapes as written), or `nil` when the object has none.
        public var type: String?
        /// The whole line, as received.
        public var line: ByteBuffer

        public init(type: String?, line: ByteBuffer) {
            self.type = type
            self.line = line
        }
    }

    private let sink: any EgressSink
    /// `trickle_relay_client_dispatch_to_sink_seconds`, through swift-metrics: created once for the process.
    private static let dispatchToSink = CoreMetrics.Timer(label: "trickle_relay_client_dispatch_to_sink_seconds")
    private let subscription: String
    private let tracing: DeliveryTracing
    private let localConsumer: @Sendable (LocalEvent) async -> Void
    private let onProblem: @Sendable (Problem) -> Void
    private let types: Set<String>?
    private let countsDataTypes: Bool
    private let logger: Logger
    private let counters = RelayMutex(Counters())
    private let problemLog: ProblemLog
    /// The sink refusing batches (a full disk, a broken endpoint): warned when it starts, throttled, and when it clears.
    private let sinkFailing: FailureLog

    /// Creates a dispatcher.
    ///
    /// - Parameters:
    ///   - sink: Where telemetry envelopes go.
    ///   - logger: Diagnostics (seq, line, reason; never payloads).
    ///   - types: When given, only lines whose top-level `type` is in the set are dispatched (others are counted).
    ///   - countsDataTypes: Whether telemetry is also counted per `data.type` (a second, nested scan per
    ///     envelope: replay summaries want it, the daemon's hot path does not). Default `false`.
    ///   - onProblem: Called for every skipped line or segment.
    ///   - subscription: The subscription id stamped on every record (``TelemetryRecord/subscription``).
    ///   - localConsumer: Receives every non-telemetry object line, in order.
    public init(
        sink: any EgressSink,
        logger: Logger,
        subscription: String = "",
        tracing: DeliveryTracing = .off,
        types: Set<String>? = nil,
        countsDataTypes: Bool = false,
        onProblem: @escaping @Sendable (Problem) -> Void = { _ in },
        localConsumer: @escaping @Sendable (LocalEvent) async -> Void = { _ in }
    ) {
        self.tracing = tracing
        self.sink = sink
        self.subscription = subscription
        self.logger = logger
        self.problemLog = ProblemLog(logger: logger)
        self.sinkFailing = FailureLog("egress sink failing batches (their events are not delivered)", logger: logger)
        self.types = types
        self.countsDataTypes = countsDataTypes
        self.onProblem = onProblem
        self.localConsumer = localConsumer
    }

    /// The counters so far.
    public var stats: Counters { self.counters.withLock { $0 } }

    /// Reads a channel to its end, dispatching as lines arrive.
    ///
    /// - Parameters:
    ///   - resumePoint: Lines of segment `seq` up to and including line `line` were already handled (a restart
    ///     resuming from its spool's position); they are skipped and counted.
    ///   - isolation: Where it runs (the caller's isolation: a followed channel's event loop).
    public func run(
        reader: JSONLReader,
        resumingAfter resumePoint: (seq: Int, line: Int)? = nil,
        isolation: isolated (any Actor)? = #isolation
    ) async throws -> TrickleSubscriber.EndOfStream {
        // Only the segment the reader resumes in is skipped into: once another segment shows up (the channel
        // moved on, or was recreated and counts from 0 again), nothing more is skipped.
        let resuming = RelayMutex(resumePoint)
        let mayResume = resumePoint != nil  // no lock per line on a run that does not resume
        defer { self.problemLog.flush() }
        return try await reader.runBatches { items in
            var lines: [JSONLLine] = []
            lines.reserveCapacity(items.count)
            for item in items {
                switch item {
                case .line(let line):
                    if mayResume, self.skipsOnResume(line, resuming) { continue }
                    lines.append(line)
                case .diagnostic(let diagnostic):
                    await self.dispatch(lines)  // keep the order of lines and diagnostics
                    lines.removeAll(keepingCapacity: true)
                    self.count(diagnostic)
                case .gap(let from, let to):
                    self.noteGap(from: from, to: to)
                }
            }
            await self.dispatch(lines)
        }
    }

    // Synchronous work of the reading path, kept out of its async functions (never inlined): an async
    // function's frame holds every local its inlined code needs, and each followed channel keeps the deepest
    // frames it ever had (10,000 channels: every KiB here is 10 MiB).

    /// Whether `line` was dispatched before a restart (it is at or before the resume point in its segment).
    @inline(never)
    private func skipsOnResume(_ line: JSONLLine, _ resuming: borrowing RelayMutex<(seq: Int, line: Int)?>) -> Bool {
        let skip = resuming.withLock { point -> Bool in
            guard let resume = point else { return false }
            guard line.seq == resume.seq else {
                point = nil
                return false
            }
            return line.lineNumber <= resume.line
        }
        if skip { self.counters.withLock { $0.skippedOnResume += 1 } }
        return skip
    }

    @inline(never)
    private func noteGap(from: Int, to: Int) {
        self.counters.withLock { $0.segmentsLost += to - from }
        self.logger.warning("segments lost before they were read", metadata: ["trickle.from": "\(from)", "trickle.to": "\(to)"])
    }

    /// Dispatches a byte stream of JSONL (a file, stdin, a captured segment) to its end.
    ///
    /// - Parameters:
    ///   - source: A name for diagnostics (a file name).
    ///   - maximumLineBytes: Lines longer than this are skipped and counted. Default 5 MiB.
    public func run(
        bytes: some AsyncSequence<ByteBuffer, any Error>,
        source: String,
        maximumLineBytes: Int = 5 * 1024 * 1024
    ) async throws {
        var parser = JSONLSegmentParser(
            source: source,
            seq: -1,
            maximumSegmentBytes: .max,
            maximumLineBytes: maximumLineBytes,
            validatesObjects: false  // the dispatcher's own scan validates, in the same pass that routes
        )
        var items: [JSONLSegmentParser.Item] = []
        defer { self.problemLog.flush() }
        // Two stages, one chunk apart: while a chunk's lines are delivered (sink, counters, problems — in order,
        // one chunk after another), the next chunk is read, framed and routed (its halves on two cores).
        try await withThrowingTaskGroup(of: Void.self) { group in
            var delivering = false
            var finished = false
            var iterator = bytes.makeAsyncIterator()
            while !finished {
                if let chunk = try await iterator.next() {
                    parser.feed(chunk, into: &items)
                } else {
                    parser.finishSegment(into: &items)
                    finished = true
                }
                let routed = await self.route(items)
                items.removeAll(keepingCapacity: true)
                if delivering { try await group.next() }
                group.addTask { await self.deliver(routed) }
                delivering = true
            }
            try await group.waitForAll()
        }
    }

    /// A run of a chunk's items, routed: lines, or a framing diagnostic between them.
    private enum RoutedItems: Sendable {
        case lines(Routed)
        case diagnostic(JSONLDiagnostic)
    }

    /// Routes a chunk's lines, in runs between its diagnostics (their order is kept): the two halves of a run on
    /// two cores.
    @inline(never)
    private func route(_ items: [JSONLSegmentParser.Item]) async -> [RoutedItems] {
        var routed: [RoutedItems] = []
        var lines: [JSONLLine] = []
        lines.reserveCapacity(items.count)
        for item in items {
            switch item {
            case .line(let line):
                lines.append(line)
            case .diagnostic(let diagnostic):
                if !lines.isEmpty { routed.append(.lines(await self.routeInHalves(lines))) }
                lines.removeAll(keepingCapacity: true)
                routed.append(.diagnostic(diagnostic))
            }
        }
        if !lines.isEmpty { routed.append(.lines(await self.routeInHalves(lines))) }
        return routed
    }

    /// Delivers a chunk's routed lines and counts its diagnostics, in order.
    private func deliver(_ routed: [RoutedItems]) async {
        for item in routed {
            switch item {
            case .lines(var lines):
                await self.deliver(&lines, since: ContinuousClock.now)
            case .diagnostic(let diagnostic):
                self.count(diagnostic)
            }
        }
    }

    /// Lines routed: telemetry for the sink, events for local consumers, the lines skipped, and the counts they
    /// add.
    private struct Routed: Sendable {
        var batch: [TelemetryRecord] = []
        var local: [LocalEvent] = []
        var problems: [Problem] = []
        var delta = Counters()
        var dataTypes: [ByteBuffer: Int] = [:]  // keyed by slices: no string per event

        /// Appends what the lines after these routed to.
        mutating func append(_ later: Routed) {
            self.batch.append(contentsOf: later.batch)
            self.local.append(contentsOf: later.local)
            self.problems.append(contentsOf: later.problems)
            self.delta.add(later.delta)
            for (dataType, count) in later.dataTypes { self.dataTypes[dataType, default: 0] += count }
        }
    }

    /// Routes lines; telemetry of one call goes to the sink as one batch.
    @inline(never)  // its frame stays out of the per-channel reading closure (see "Synchronous work of the reading path")
    nonisolated(nonsending) public func dispatch(_ lines: [JSONLLine]) async {
        guard !lines.isEmpty else { return }
        let started = ContinuousClock.now
        var routed = self.route(lines)
        await self.deliver(&routed, since: started)
    }

    /// Reports the lines skipped, hands the telemetry to the sink as one batch, counts, and hands the other
    /// events to the local consumer.
    nonisolated(nonsending) private func deliver(_ routed: inout Routed, since started: ContinuousClock.Instant) async {
        for problem in routed.problems { self.skipped(problem) }
        if !routed.batch.isEmpty {
            do {
                if self.tracing.tracer == nil {
                    try await self.sink.export(routed.batch)
                } else {
                    try await self.exportTraced(routed.batch)
                }
                self.noteExported(since: started)
            } catch {
                self.noteSinkFailure(error, records: routed.batch.count, delta: &routed.delta)
            }
        }
        self.add(&routed)
        for event in routed.local { await self.localConsumer(event) }
    }

    private func exportTraced(_ batch: [TelemetryRecord]) async throws {
        try await self.tracing.withSpan("trickle_relay.dispatch", attributes: ["trickle_relay.events": batch.count]) {
            try await self.sink.export(batch)
        }
    }

    /// Routes `lines`, the first half in a child task while this one routes the second (from 64 lines).
    @inline(never)
    private func routeInHalves(_ lines: [JSONLLine]) async -> Routed {
        await inTwoHalves(lines, minimumCount: 64, { self.route($0) }, joining: { $0.append($1) })
    }

    @inline(never)
    private func route(_ lines: some RandomAccessCollection<JSONLLine>) -> Routed {
        var routed = Routed()
        if let last = lines.last, last.seq >= 0 { routed.delta.lastSeq = last.seq }
        for line in lines {
            routed.delta.lines += 1
            let route = Self.route(line.bytes)
            if let types = self.types {
                switch route {
                case .telemetry where !types.contains("telemetry"), .local(type: nil):
                    continue
                case .local(let type?) where !types.contains(type):
                    continue
                default: break
                }
            }
            switch route {
            case .telemetry(let envelope):
                routed.delta.telemetry += 1  // also `byType["telemetry"]`, added below (no dictionary per call)
                if self.countsDataTypes, let dataType = EnvelopeFields.dataType(of: envelope) { routed.dataTypes[dataType, default: 0] += 1 }
                routed.batch.append(TelemetryRecord(envelope: envelope, seq: line.seq, lineNumber: line.lineNumber, subscription: self.subscription))
            case .local(let type):
                routed.delta.byType[type ?? "(none)", default: 0] += 1
                routed.local.append(LocalEvent(type: type, line: line.bytes))
            case .malformed(let error):
                routed.delta.malformed += 1
                // Ill-formed UTF-8 is malformed JSON with a reason of its own: the one a strict endpoint gives.
                let reason = error.isInvalidUTF8 ? "invalid_utf8" : "malformed_json"
                routed.problems.append(Problem(seq: line.seq, lineNumber: line.lineNumber, reason: reason, detail: error.description))
            case .nonObject:
                routed.delta.nonObject += 1
                routed.problems.append(Problem(seq: line.seq, lineNumber: line.lineNumber, reason: "not_an_object", detail: ""))
            case .telemetryWithoutObjectEvent:
                routed.delta.telemetryWithoutObjectEvent += 1
                routed.problems.append(Problem(seq: line.seq, lineNumber: line.lineNumber, reason: "telemetry_without_object_event", detail: ""))
            }
        }
        return routed
    }

    /// Read from the channel → taken by the sink (the spool, or the sink itself), per batch.
    @inline(never)
    private func noteExported(since started: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - started
        Self.dispatchToSink.recordNanoseconds(elapsed.components.seconds &* 1_000_000_000 &+ elapsed.components.attoseconds / 1_000_000_000)
        self.sinkFailing.cleared()
    }

    @inline(never)
    private func noteSinkFailure(_ error: any Error, records: Int, delta: inout Counters) {
        delta.sinkFailures += 1
        delta.sinkFailedEvents += records
        self.sinkFailing.failed(reason: "\(error)", metadata: ["sink.records": "\(records)"])
    }

    /// Adds what one dispatch counted to the counters.
    @inline(never)
    private func add(_ routed: inout Routed) {
        for (dataType, count) in routed.dataTypes { routed.delta.byDataType[String(buffer: dataType), default: 0] += count }
        let telemetry = routed.delta.telemetry
        self.counters.withLock { counters in
            counters.add(routed.delta)
            if telemetry > 0 { counters.byType["telemetry", default: 0] += telemetry }
        }
    }

    /// Reports a skipped line: to `onProblem` always, to the log through the throttle (the first few of each
    /// kind with their position, then counts per interval — never one line per bad line).
    private func skipped(_ problem: Problem) {
        self.onProblem(problem)
        self.problemLog.report(
            problem.reason,
            "input skipped",
            metadata: ["trickle.seq": "\(problem.seq)", "line": "\(problem.lineNumber.map(String.init) ?? "-")", "detail": "\(problem.detail)"]
        )
    }

    /// Logs the last aggregated counts of skipped input (call when a run ends).
    public func flushProblemLog() { self.problemLog.flush() }

    private func count(_ diagnostic: JSONLDiagnostic) {
        self.skipped(
            Problem(seq: diagnostic.seq, lineNumber: diagnostic.lineNumber, reason: "\(diagnostic.reason)", detail: diagnostic.detail)
        )
        self.counters.withLock { counters in
            counters.lines += diagnostic.lineNumber == nil ? 0 : 1
            switch diagnostic.reason {
            case .lineTooLarge, .segmentTooLarge: counters.oversize += 1
            case .notAnObject: counters.nonObject += 1
            default: counters.malformed += 1
            }
        }
    }

    // MARK: Routing

    enum Route {
        case telemetry(ByteBuffer)
        case local(type: String?)
        case malformed(JSONSyntaxError)
        case nonObject
        case telemetryWithoutObjectEvent
    }

    /// Finds the top-level `type` (and, for telemetry, the `event` value's bytes) in one validating pass.
    static func route(_ line: ByteBuffer) -> Route {
        let fields: EventsLineFields
        switch EventsLineFields.scan(line) {
        case .failure(let error): return .malformed(error)
        case .success(let scanned) where scanned.kind != .object: return .nonObject
        case .success(let scanned): fields = scanned
        }
        guard fields.typeRange != nil else { return .local(type: nil) }
        guard fields.type(is: "telemetry", in: line) else { return .local(type: fields.type(in: line)) }
        guard let event = fields.eventObject(in: line) else { return .telemetryWithoutObjectEvent }
        return .telemetry(event)
    }
}

extension EventDispatcher.Counters {
    mutating func add(_ other: Self) {
        self.lines += other.lines
        self.telemetry += other.telemetry
        for (type, count) in other.byType { self.byType[type, default: 0] += count }
        for (type, count) in other.byDataType { self.byDataType[type, default: 0] += count }
        self.malformed += other.malformed
        self.nonObject += other.nonObject
        self.telemetryWithoutObjectEvent += other.telemetryWithoutObjectEvent
        self.oversize += other.oversize
        self.sinkFailures += other.sinkFailures
        self.sinkFailedEvents += other.sinkFailedEvents
        self.segmentsLost += other.segmentsLost
        self.skippedOnResume += other.skippedOnResume
        if let seq = other.lastSeq { self.lastSeq = max(self.lastSeq ?? seq, seq) }
    }
}
