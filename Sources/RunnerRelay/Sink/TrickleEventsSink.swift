import DequeModule
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
public import Logging
public import NIOCore
public import ServiceLifecycle
import CoreMetrics
import Synchronization
import Tracing
public import TrickleProtocol
import TrickleRelaySupport

/// The runner-side telemetry sink: `emit` from any thread or task, never blocking, never throwing; a bounded
/// queue (events *and* bytes) that drops the **oldest** on overflow; and a drain that stamps, scrubs, frames
/// `{"type":"telemetry","event":<envelope>}` and writes onto the session's ``JSONLWriter``.
///
/// Loss is counted and made visible downstream: while drops happen, at most once per
/// ``Configuration/dropReportInterval``, and once at teardown, a stamped `telemetry_dropped` envelope carries
/// the counts. The control path (responses, notifications, logs, `runner_ready`) shares the writer, is lossless
/// (back-pressure instead of drops) and always goes before queued telemetry.
///
/// All heavy work (validation, stamping, scrubbing, framing) happens on the drain side; `emit` only takes a
/// lock, appends, and at most wakes the drain.
public final class TrickleEventsSink: Service, Sendable {
    private struct QueuedEvent {
        var bytes: ByteBuffer
        var emittedAtNanos: UInt64  // the wall clock at `emit`
        var traceContext: TraceContextHeaders? = nil

        var timestampMillis: Int64 { Int64(self.emittedAtNanos / 1_000_000) }
    }

    private struct State {
        var telemetry: Deque<QueuedEvent> = []
        var queuedBytes = 0
        var control: Deque<ByteBuffer> = []
        var drainWaiter: CheckedContinuation<Void, Never>?
        var controlWaiters: [CheckedContinuation<Bool, Never>] = []
        var isFinishing = false
        /// The drain has returned: nothing queued from now on would be written.
        var isDrainOver = false
        var stats = Stats()
        var droppedSinceReport = 0
        var droppedBytesSinceReport = 0
        var refusedSinceReport = 0
        var lostSinceReport = 0
        var reportWindowStart: Int64 = 0
    }

    /// What the drain takes in one go.
    private enum Work {
        case control(ByteBuffer)
        case telemetry([QueuedEvent])
        case dropReport(dropped: Int, bytes: Int, refused: Int, lost: Int, windowMillis: Int64)
        case idle(reportDue: Bool)
        case finished
    }

    /// The configuration.
    public let configuration: Configuration
    private let writer: JSONLWriter
    private let scrubber: Scrubber
    /// `trickle_relay_emit_to_relay_seconds`, through swift-metrics (whatever factory the process bootstrapped).
    private let emitToRelay = CoreMetrics.Timer(label: "trickle_relay_emit_to_relay_seconds")
    private let logger: Logger
    private let state = RelayMutex(State())
    private let lastReportAt: RelayMutex<RelayClock.Instant>
    private let refusedLog: ProblemLog
    /// Bytes a stamped envelope and its frame add to an event, at most (ids, timestamps, session fields).
    private let framingAllowance: Int

    /// Creates a sink writing onto `writer` (which the caller runs and closes).
    public init(writer: JSONLWriter, configuration: Configuration, logger: Logger) {
        self.writer = writer
        self.configuration = configuration
        self.scrubber = Scrubber(configuration: configuration.scrubber)
        var logger = logger
        logger[metadataKey: "session.id"] = "\(configuration.identity.sessionID)"
        self.logger = logger
        self.refusedLog = ProblemLog(logger: logger)
        self.lastReportAt = RelayMutex(configuration.clock.now)
        self.framingAllowance = 256 + configuration.identity.sessionID.utf8.count * 2
            + (configuration.identity.connectionID?.utf8.count ?? 0) * 2 + configuration.identity.clientSource.utf8.count * 2
        // `relayed` means accepted by the server: each segment's telemetry lines are counted when its upload
        // ends, into `relayed` (the server answered 200 after the last byte) or `lost` (the upload failed).
        let tracer = configuration.tracer
        writer.publisher.onSegmentOutcome { [weak self] outcome in
            if let tracer { Self.traceUpload(outcome, tracer: tracer) }
            guard outcome.units > 0 || outcome.otherUnits > 0, let self else { return }
            self.state.withLock { state in
                if outcome.accepted {
                    state.stats.relayed += outcome.units
                    state.stats.controlRelayed += outcome.otherUnits
                } else {
                    state.stats.lost += outcome.units
                    state.lostSinceReport += outcome.units
                    state.stats.controlLost += outcome.otherUnits
                    state.stats.controlLostInSegments += outcome.otherUnits
                }
            }
        }
    }

    /// A span for one segment's upload, from when it was opened to its outcome (the relay's own tracer).
    private static func traceUpload(_ outcome: TricklePublisher.SegmentOutcome, tracer: any Tracer) {
        let span = tracer.startSpan(
            "trickle_relay.segment.publish",
            context: .topLevel,
            ofKind: .producer,
            at: DefaultTracerClock.Timestamp(nanosecondsSinceEpoch: outcome.openedAtNanos)
        )
        span.attributes["trickle.seq"] = outcome.seq
        span.attributes["trickle_relay.events"] = outcome.units
        if !outcome.accepted { span.setStatus(SpanStatus(code: .error, message: "the segment's upload failed")) }
        span.end()
    }

    /// The counters so far.
    public var stats: Stats {
        self.state.withLock { state in
            var stats = state.stats
            stats.queuedEvents = state.telemetry.count
            stats.queuedBytes = state.queuedBytes
            stats.queuedControl = state.control.count
            return stats
        }
    }

    // MARK: Intake

    /// Queues one telemetry event (a JSON object: a bare event, or a full `stream_trace` envelope).
    ///
    /// Never blocks and never throws: when the queue is full the oldest queued event is dropped (and counted);
    /// an event too large for the line cap is refused (and counted); when telemetry is disabled it is counted
    /// and discarded.
    public func emit(_ event: ByteBuffer) {
        self.emit(event, traceContext: nil)
    }

    /// Queues one telemetry event with the W3C trace context it was handed over with (e.g. the ingest request's
    /// `traceparent` header, already validated): the envelope carries it in `data` unless the event has a valid
    /// context of its own.
    public func emit(_ event: ByteBuffer, traceContext: TraceContextHeaders?) {
        let timestamp = WallClock.unixNanoseconds()
        let size = event.readableBytes
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.stats.received += 1
            guard self.configuration.isTelemetryEnabled else {
                state.stats.disabled += 1
                return nil
            }
            guard !state.isFinishing else {
                state.stats.dropped += 1
                state.stats.droppedBytes += size
                return nil
            }
            state.stats.emitted += 1
            guard size + self.framingAllowance <= self.configuration.maximumLineBytes else {
                state.stats.refused += 1
                state.refusedSinceReport += 1
                return nil
            }
            state.telemetry.append(QueuedEvent(bytes: event, emittedAtNanos: timestamp, traceContext: traceContext))
            state.queuedBytes += size
            while state.telemetry.count > self.configuration.maximumQueuedEvents
                || state.queuedBytes > self.configuration.maximumQueuedBytes
            {
                let evicted = state.telemetry.removeFirst()
                state.queuedBytes -= evicted.bytes.readableBytes
                state.stats.dropped += 1
                state.stats.droppedBytes += evicted.bytes.readableBytes
                state.droppedSinceReport += 1
                state.droppedBytesSinceReport += evicted.bytes.readableBytes
            }
            defer { state.drainWaiter = nil }
            return state.drainWaiter
        }
        waiter?.resume()
    }

    /// Counts trace context values dropped as malformed before they reached ``emit(_:traceContext:)`` (an
    /// ingest request's bad `traceparent` header).
    public func countInvalidTraceContext(_ values: Int) {
        guard values > 0 else { return }
        self.state.withLock { $0.stats.traceContextInvalid += values }
    }

    /// Queues one telemetry event given as text.
    public func emit(_ event: String) {
        self.emit(ByteBuffer(string: event))
    }

    /// Queues a control-path line (one JSON object), suspending while the control queue is full. Lossless while
    /// the sink drains; a line sent after the drain ended is counted in ``Stats/controlLost``.
    public func sendControl(_ line: ByteBuffer) async {
        while !self.trySendControl(line) {
            let drainIsOver = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let outcome = self.state.withLock { state -> Bool? in
                    if state.isDrainOver {
                        state.stats.controlReceived += 1
                        state.stats.controlLost += 1
                        return true
                    }
                    if state.control.count < self.configuration.controlQueueCapacity { return false }
                    state.controlWaiters.append(continuation)
                    return nil
                }
                if let outcome { continuation.resume(returning: outcome) }
            }
            if drainIsOver { return }
        }
    }

    /// Queues a control-path line unless the control queue is full.
    /// - Returns: `false` when full (an HTTP ingest answers 503 with `Retry-After`).
    public func trySendControl(_ line: ByteBuffer) -> Bool {
        let (accepted, waiter): (Bool, CheckedContinuation<Void, Never>?) = self.state.withLock { state in
            guard state.control.count < self.configuration.controlQueueCapacity, !state.isDrainOver else { return (false, nil) }
            state.stats.controlReceived += 1
            state.control.append(line)
            defer { state.drainWaiter = nil }
            return (true, state.drainWaiter)
        }
        waiter?.resume()
        return accepted
    }

    // MARK: Drain

    /// Drains the queues onto the writer until ``finish()`` is called and everything queued is written.
    ///
    /// Graceful shutdown finishes the sink (intake stops, the queue is flushed).
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await self.drain()
        } onGracefulShutdown: {
            self.finish()
        }
    }

    /// Stops intake: later emits are dropped (and counted); ``run()`` returns once the queue is written, after a
    /// final `telemetry_dropped` report if anything was lost.
    public func finish() {
        let drainWaiter = self.state.withLock { state in
            state.isFinishing = true
            defer { state.drainWaiter = nil }
            return state.drainWaiter
        }
        drainWaiter?.resume()
    }

    /// Marks the drain over: control lines still queued (a cancelled drain) are lost, and senders waiting for
    /// room are woken to count theirs lost too.
    private func endDrain() {
        let waiters = self.state.withLock { state in
            state.isDrainOver = true
            state.stats.controlLost += state.control.count
            state.control.removeAll()
            defer { state.controlWaiters = [] }
            return state.controlWaiters
        }
        for waiter in waiters { waiter.resume(returning: false) }
    }

    private func drain() async throws {
        self.state.withLock { $0.reportWindowStart = Self.unixMillisecondsNow() }
        defer { self.endDrain() }
        while true {
            switch self.nextWork() {
            case .control(let line):
                await self.write(line, as: .control)
            case .telemetry(let events):
                await self.write(telemetry: events.compactMap(self.prepare))
                // Emit → written into the segment upload (which streams it to the server as it is written).
                let now = WallClock.unixNanoseconds()
                for event in events { self.emitToRelay.recordNanoseconds(Int64(clamping: now &- min(now, event.emittedAtNanos))) }
            case .dropReport(let dropped, let bytes, let refused, let lost, let window):
                await self.writeDropReport(dropped: dropped, bytes: bytes, refused: refused, lost: lost, windowMillis: window)
            case .idle(let reportDue):
                // Cancelled (not finished): waiting returns at once from here on, so waiting again would spin.
                if Task.isCancelled { return }
                await self.waitForWork(reportDue: reportDue)
            case .finished:
                return
            }
        }
    }

    private func nextWork() -> Work {
        let now = self.configuration.clock.now
        let reportIntervalElapsed = self.lastReportAt.withLock { now - $0 >= self.configuration.dropReportInterval }
        let (work, waiters): (Work, [CheckedContinuation<Bool, Never>]) = self.state.withLock { state in
            // Control first: it is lossless and must not wait behind telemetry.
            if let line = state.control.popFirst() {
                let waiter = state.controlWaiters.isEmpty ? [] : [state.controlWaiters.removeFirst()]
                return (.control(line), waiter)
            }
            let pendingReport = state.droppedSinceReport > 0 || state.refusedSinceReport > 0 || state.lostSinceReport > 0
            if pendingReport && (reportIntervalElapsed || (state.isFinishing && state.telemetry.isEmpty)) {
                let nowMillis = Self.unixMillisecondsNow()
                let work = Work.dropReport(
                    dropped: state.droppedSinceReport,
                    bytes: state.droppedBytesSinceReport,
                    refused: state.refusedSinceReport,
                    lost: state.lostSinceReport,
                    windowMillis: nowMillis - state.reportWindowStart
                )
                state.lostSinceReport = 0
                state.droppedSinceReport = 0
                state.droppedBytesSinceReport = 0
                state.refusedSinceReport = 0
                state.reportWindowStart = nowMillis
                return (work, [])
            }
            if !state.telemetry.isEmpty {
                // Everything queued (up to a batch) goes out in one writer call: per-line calls cap the drain
                // at tens of thousands of events a second.
                var batch: [QueuedEvent] = []
                batch.reserveCapacity(min(state.telemetry.count, Self.drainBatch))
                while batch.count < Self.drainBatch, let event = state.telemetry.popFirst() {
                    state.queuedBytes -= event.bytes.readableBytes
                    batch.append(event)
                }
                return (.telemetry(batch), [])
            }
            if state.isFinishing { return (.finished, []) }
            return (.idle(reportDue: pendingReport), [])
        }
        for waiter in waiters { waiter.resume(returning: false) }
        return work
    }

    private func waitForWork(reportDue: Bool) async {
        if reportDue {
            // Drops are waiting to be reported: wake up for the report even if nothing else arrives.
            let due = self.lastReportAt.withLock { $0 + self.configuration.dropReportInterval }
            await untilFirst({ await self.waitForSignal() }, { try? await self.configuration.clock.sleep(until: due) })
        } else {
            await self.waitForSignal()
        }
    }

    private func waitForSignal() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = self.state.withLock { state -> Bool in
                    if !state.control.isEmpty || !state.telemetry.isEmpty || state.isFinishing || Task.isCancelled {
                        return true
                    }
                    state.drainWaiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { state in
                defer { state.drainWaiter = nil }
                return state.drainWaiter
            }
            waiter?.resume()
        }
    }

    // MARK: Framing and writing

    private enum LineKind {
        case control, telemetry, dropReport
    }

    /// Stamps, scrubs and frames one event; `nil` when it is not a valid event (counted).
    private func prepare(_ event: QueuedEvent) -> ByteBuffer? {
        var envelope: ByteBuffer
        var invalidTraceValues = 0
        defer {
            if invalidTraceValues > 0 { self.state.withLock { $0.stats.traceContextInvalid += invalidTraceValues } }
        }
        do {
            envelope = try TelemetryEnvelope.make(
                event: event.bytes,
                identity: self.configuration.identity,
                timestampMillis: event.timestampMillis,
                traceContext: event.traceContext,
                invalidTraceValues: &invalidTraceValues
            )
        } catch {
            self.state.withLock { $0.stats.invalid += 1 }
            self.logger.debug("telemetry event skipped", metadata: ["reason": "\(error.reason)"])
            return nil
        }
        if self.configuration.scrubs {
            let (scrubbed, redactions) = self.scrubber.scrub(json: envelope)
            envelope = scrubbed
            if redactions > 0 { self.state.withLock { $0.stats.redactions += redactions } }
        }
        return Self.frame(envelope)
    }

    /// `{"type":"telemetry","event":<envelope>}`
    static func frame(_ envelope: ByteBuffer) -> ByteBuffer {
        var line = ByteBufferAllocator().buffer(capacity: envelope.readableBytes + 32)
        line.writeString(#"{"type":"telemetry","event":"#)
        line.writeImmutableBuffer(envelope)
        line.writeString("}")
        return line
    }

    private func write(_ line: ByteBuffer, as kind: LineKind) async {
        do throws(JSONLWriterError) {
            try await self.writer.write(line: line, tally: kind == .telemetry ? .unit : kind == .control ? .otherUnit : .uncounted)
            self.state.withLock { state in
                switch kind {
                case .control: state.stats.controlWritten += 1  // relayed once its segment is accepted
                case .telemetry: state.stats.written += 1  // relayed once its segment is accepted
                case .dropReport: state.stats.dropReports += 1
                }
                state.stats.bytesWritten += line.readableBytes + 1
            }
        } catch where error.code == .lineTooLarge {
            self.state.withLock { state in
                switch kind {
                case .telemetry:
                    state.stats.refused += 1
                    state.refusedSinceReport += 1
                case .control: state.stats.controlLost += 1
                case .dropReport: break  // the relay's own report, not an accepted event
                }
            }
            self.refusedLog.report("line_too_large", "event refused: its line exceeds the segment cap", metadata: Self.describe(line))
        } catch {
            // Telemetry and control are counted apart, so each path's counters add up: every telemetry event in
            // exactly one terminal counter, every control event written or `controlLost`.
            self.state.withLock { state in
                switch kind {
                case .telemetry: state.stats.writerErrors += 1
                case .control: state.stats.controlLost += 1
                case .dropReport: break  // the relay's own report, not an accepted event
                }
            }
            self.logger.debug("events writer failed", metadata: ["error": "\(error)"])
        }
    }

    /// Telemetry events taken off the queue per writer call at most.
    static let drainBatch = 512

    private func write(telemetry lines: [ByteBuffer]) async {
        guard !lines.isEmpty else { return }
        let result = await self.writer.write(lines: lines, tally: .unit)
        do {
            let rejected = result.rejected
            var rejectedBytes = 0
            var refused = 0
            for (index, error) in rejected {
                rejectedBytes += lines[index].readableBytes + 1
                if error.code == .lineTooLarge {
                    refused += 1
                    self.refusedLog.report(
                        "line_too_large",
                        "telemetry event refused: its line exceeds the segment cap",
                        metadata: Self.describe(lines[index])
                    )
                }
            }
            let written = result.written
            let bytes = lines.prefix(written + rejected.count).reduce(0) { $0 + $1.readableBytes + 1 } - rejectedBytes
            // Every line of the batch in exactly one counter: written (relayed or lost once its segment ends),
            // refused, or a writer error (rejected for another reason, or left behind by a publisher failure).
            self.state.withLock { state in
                state.stats.written += written
                state.stats.bytesWritten += max(0, bytes)
                state.stats.refused += refused
                state.refusedSinceReport += refused
                state.stats.writerErrors += rejected.count - refused + result.unwritten(of: lines.count)
            }
        }
        if let failure = result.failure {
            self.logger.debug("events writer failed", metadata: ["error": "\(failure)"])
        }
    }

    private func writeDropReport(dropped: Int, bytes: Int, refused: Int, lost: Int, windowMillis: Int64) async {
        let now = self.configuration.clock.now
        self.lastReportAt.withLock { $0 = now }
        let event = ByteBuffer(
            string: #"{"type":"telemetry_dropped","dropped":\#(dropped),"dropped_bytes":\#(bytes),"refused":\#(refused),"lost":\#(lost),"window_ms":\#(windowMillis)}"#
        )
        guard
            let envelope = try? TelemetryEnvelope.make(
                event: event,
                identity: self.configuration.identity,
                timestampMillis: Self.unixMillisecondsNow()
            )
        else { return }
        self.logger.warning(
            "telemetry dropped",
            metadata: ["sink.dropped": "\(dropped)", "sink.dropped_bytes": "\(bytes)", "sink.refused": "\(refused)", "sink.lost": "\(lost)"]
        )
        await self.write(Self.frame(envelope), as: .dropReport)
    }

    static func unixMillisecondsNow() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    /// Which event a framed telemetry line carries, for a log line: its id, `data.type` and size (never payload).
    static func describe(_ line: ByteBuffer) -> Logger.Metadata {
        line.withUnsafeReadableBytes { bytes in
            var metadata: Logger.Metadata = ["line.bytes": "\(bytes.count)"]
            guard let event = JSONSkim.member("event", in: bytes) else { return metadata }
            let envelope = UnsafeRawBufferPointer(rebasing: bytes[event])
            if let id = JSONSkim.stringContents("id", in: envelope) {
                metadata["event.id"] = "\(String(decoding: envelope[id].prefix(64), as: UTF8.self))"
            }
            if let data = JSONSkim.member("data", in: envelope),
                let type = JSONSkim.stringContents("type", in: UnsafeRawBufferPointer(rebasing: envelope[data]))
            {
                let dataBytes = UnsafeRawBufferPointer(rebasing: envelope[data])
                metadata["event.type"] = "\(String(decoding: dataBytes[type].prefix(64), as: UTF8.self))"
            }
            return metadata
        }
    }
}
