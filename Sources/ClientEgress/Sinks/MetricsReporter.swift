public import AsyncHTTPClient
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
import CoreMetrics
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// Sends relayed telemetry to an HTTP metrics API in batches:
/// `{"app":…,"host":…,"events":[{"type":<data.type>,"data":<data>,"id":<id>,"timestamp":<timestamp>}]}`, built
/// from the envelopes' raw bytes (`data` is never re-encoded), with a bearer key and an `Idempotency-Key` per
/// batch.
///
/// At most ``Configuration/maximumBatchEvents`` events and ``Configuration/maximumBatchBytes`` per request; a
/// batch goes out when full or every ``Configuration/flushInterval``. Network errors and 5xx back off with
/// jitter (1 s → 60 s); 401 pauses sending — events keep buffering — until the key changes; 429 waits
/// `Retry-After` (seconds or an HTTP date; 60 s without one); 413 halves the batch, and a single event still too
/// large is dropped with its id logged; 400 drops that batch and logs why. Memory is bounded
/// (``Configuration/maximumBufferedEvents``); what cannot be held is counted, never silently lost.
public final class MetricsReporter: SettlingEgressSink {
    struct Pending {
        var ordinal = 0  // its place among every record exported
        var id: String
        var body: ByteBuffer  // this event's `{"type":…,"data":…,"id":…,"timestamp":…}` (or its OTLP log record)
        var traceparent: String? = nil  // the envelope's `data.traceparent`, when it carries one
        var tracestate: String? = nil
        var exportedAt = ContinuousClock.now  // for the delivery latency
    }

    /// `trickle_relay_client_delivery_seconds`: export → the endpoint accepted it, per event (swift-metrics).
    private static let deliveryLatency = CoreMetrics.Timer(label: "trickle_relay_client_delivery_seconds")

    private struct State {
        var buffer: Deque<Pending> = []
        var stats = Stats()
        var waiter: CheckedContinuation<Void, Never>?
        var isShuttingDown = false
        var exported = 0  // records given to `export`
        var settlementHandler: (@Sendable (Int) -> Void)?
        var sendingHandler: (@Sendable (Int, Int) -> Void)?
    }

    public let configuration: Configuration
    private let httpClient: HTTPClient
    private let apiKey: @Sendable () -> String?
    private let logger: Logger
    private let state = RelayMutex(State())
    private let keyReload = GenerationSignal()
    private let failing: FailureLog

    /// The endpoint's failure state while it holds (reason in words, since when), for the live page.
    var failure: FailureLog.Current? { self.failing.current }
    private let tracing: DeliveryTracing

    /// Creates a reporter.
    /// - Parameter apiKey: Returns the current key (re-read on every attempt: a refreshed key file resumes a
    ///   401 pause).
    ///   - tracing: Traces each request as a delivery span (child of, or linked to, the events' trace context).
    public init(
        configuration: Configuration,
        httpClient: HTTPClient,
        apiKey: @escaping @Sendable () -> String?,
        tracing: DeliveryTracing = .off,
        logger: Logger
    ) {
        self.configuration = configuration
        self.tracing = tracing
        self.httpClient = httpClient
        self.apiKey = apiKey
        self.logger = logger
        self.failing = FailureLog("\(configuration.format.endpointName) failing; events kept and retried", logger: logger, clock: configuration.clock)
    }

    /// This machine's host name (`gethostname`: no DNS lookup, which could block for seconds).
    public static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count) == 0 else { return "unknown" }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var stats: Stats {
        self.state.withLock { state in
            var stats = state.stats
            stats.buffered = state.buffer.count
            return stats
        }
    }

    // MARK: EgressSink

    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        let format = self.configuration.format
        let pending = records.map { Self.eventBody($0, format: format) }
        for (record, event) in zip(records, pending) where event == nil {
            self.logger.warning(
                "telemetry envelope without an id or an object data; not sent",
                metadata: ["trickle.seq": "\(record.seq)", "line": "\(record.lineNumber)"]
            )
        }
        let (waiter, settled): (CheckedContinuation<Void, Never>?, (@Sendable (Int) -> Void, Int)?) = self.state.withLock { state in
            for event in pending {
                state.exported += 1
                guard var event else {
                    state.stats.unsendable += 1
                    continue
                }
                if state.buffer.count >= self.configuration.maximumBufferedEvents {
                    state.stats.overflowed += 1
                    continue
                }
                event.ordinal = state.exported - 1
                state.buffer.append(event)
            }
            let settled = state.settlementHandler.map { ($0, state.buffer.first?.ordinal ?? state.exported) }
            guard state.buffer.count >= self.configuration.maximumBatchEvents else { return (nil, settled) }
            defer { state.waiter = nil }
            return (state.waiter, settled)
        }
        if let (handler, count) = settled { handler(count) }
        waiter?.resume()
    }

    public func onSettled(_ handler: @escaping @Sendable (Int) -> Void) {
        self.state.withLock { $0.settlementHandler = handler }
    }

    public var maximumUnsettledRecords: Int { self.configuration.maximumBufferedEvents }

    public func onSending(_ handler: @escaping @Sendable (_ first: Int, _ last: Int) -> Void) {
        self.state.withLock { $0.sendingHandler = handler }
    }

    public func forceFlush() async throws {
        let waiter = self.state.withLock { state in
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Re-reads the key now (SIGHUP): a 401 pause ends at once if the key changed. (The key is also re-read
    /// every second while paused, so a changed key file resumes sending without a signal.)
    public func reloadKey() {
        self.keyReload.advance()
    }

    public func shutdown() async {
        self.keyReload.advance()
        let waiter = self.state.withLock { state in
            state.isShuttingDown = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    // MARK: Sending

    /// Sends batches until shutdown, then tries once more to empty the buffer.
    public func run() async throws {
        var failures = 0
        var batchLimit = self.configuration.maximumBatchEvents
        // After a 413 the batch size that worked is kept (re-sending full batches would meet a 413 each time: a
        // retry storm); it is probed upwards again at most once a minute.
        var lastTooLarge: RelayClock.Instant?
        while true {
            let (batch, shuttingDown) = self.nextBatch(limit: batchLimit)
            if batch.isEmpty {
                // Cancelled: waiting returns at once from here on, so waiting again would spin.
                if shuttingDown || Task.isCancelled { return }
                await self.waitForWork()
                continue
            }
            switch await self.send(batch) {
            case .accepted:
                self.failing.cleared(metadata: ["metrics.events": "\(batch.count)"])
                failures = 0
                if let since = lastTooLarge, self.configuration.clock.now - since >= .seconds(60) {
                    batchLimit = min(batchLimit * 2, self.configuration.maximumBatchEvents)
                    lastTooLarge = batchLimit < self.configuration.maximumBatchEvents ? self.configuration.clock.now : nil
                }
                self.remove(batch.count, counting: \.sent)
                self.state.withLock { $0.stats.batches += 1 }
                let now = ContinuousClock.now
                for event in batch {
                    let elapsed = now - event.exportedAt
                    Self.deliveryLatency.recordNanoseconds(elapsed.components.seconds &* 1_000_000_000 &+ elapsed.components.attoseconds / 1_000_000_000)
                }
            case .rejected(let reason):
                self.logger.warning(
                    "metrics endpoint rejected a batch; dropped",
                    metadata: ["metrics.events": "\(batch.count)", "metrics.ids": "\(batch.map(\.id).joined(separator: ","))", "reason": "\(reason)"]
                )
                self.remove(batch.count, counting: \.rejected)
            case .tooLarge:
                if batch.count == 1, batch[0].body.readableBytes >= self.configuration.minimumTooLargeEventBytes {
                    self.logger.warning(
                        "event too large for the metrics endpoint; dropped",
                        metadata: ["metrics.id": "\(batch[0].id)", "metrics.bytes": "\(batch[0].body.readableBytes)"]
                    )
                    self.remove(1, counting: \.tooLarge)
                } else if batch.count == 1 {
                    // A 413 for one small event: the endpoint's limit is misconfigured. Dropping would lose every
                    // event one by one; back off and keep it until the endpoint takes it (or we are stopped).
                    failures += 1
                    self.state.withLock { $0.stats.retries += 1 }
                    self.failing.failed(
                        reason: "413 for a single event of \(batch[0].body.readableBytes) bytes: check the endpoint's body size limit",
                        metadata: ["metrics.events.buffered": "\(self.stats.buffered)"]
                    )
                    if shuttingDown && failures >= 3 { return }
                    try await self.configuration.clock.sleep(for: self.configuration.retryBackoff.delay(forAttempt: failures - 1))
                } else {
                    batchLimit = max(batch.count / 2, 1)
                    lastTooLarge = self.configuration.clock.now
                    self.state.withLock { $0.stats.retries += 1 }
                }
            case .unauthorized(let rejectedKey):
                // Paused until the key differs from the one *this request* carried: re-reading it here would miss
                // a key the operator fixed while the request was on its way, and pause forever.
                self.state.withLock { $0.stats.unauthorized += 1 }
                // A failure state like the others (logged when it starts, throttled while it lasts, shown on the
                // live page in words), cleared by the next accepted batch.
                self.failing.failed(reason: "HTTP 401: the API key was rejected; sending paused until it changes")
                while self.apiKey() == rejectedKey {
                    if self.state.withLock({ $0.isShuttingDown }) { return }
                    let seen = self.keyReload.generation
                    await untilFirst(
                        { await self.keyReload.wait(past: seen) },
                        { try? await self.configuration.clock.sleep(for: min(self.configuration.flushInterval, .seconds(1))) }
                    )
                    try Task.checkCancellation()
                }
                self.logger.info("API key changed; sending resumes")
            case .retryAfter(let delay):
                self.state.withLock { $0.stats.retries += 1 }
                self.failing.failed(reason: "429 Too Many Requests", metadata: ["metrics.retry_after_s": "\((delay ?? self.configuration.defaultRetryAfter).components.seconds)"])
                try await self.configuration.clock.sleep(for: delay ?? self.configuration.defaultRetryAfter)
            case .failed(let reason):
                failures += 1
                self.state.withLock { $0.stats.retries += 1 }
                self.failing.failed(reason: reason, metadata: ["metrics.events.buffered": "\(self.stats.buffered)"])
                if shuttingDown && failures >= 3 {
                    self.logger.warning("metrics endpoint unreachable at shutdown; buffered events lost", metadata: ["metrics.events": "\(self.stats.buffered)", "reason": "\(reason)"])
                    return
                }
                try await self.configuration.clock.sleep(for: self.configuration.retryBackoff.delay(forAttempt: failures - 1))
            }
        }
    }

    private enum Outcome {
        case accepted, rejected(String), tooLarge, retryAfter(Duration?), failed(String)
        /// 401/403 for the request sent with `rejectedKey` (the key may have changed while it was on its way).
        case unauthorized(rejectedKey: String?)
    }

    private func nextBatch(limit: Int) -> ([Pending], Bool) {
        self.state.withLock { state in
            var batch: [Pending] = []
            var bytes = 64 + self.configuration.app.utf8.count + self.configuration.host.utf8.count
            for event in state.buffer {
                guard batch.count < limit, batch.isEmpty || bytes + event.body.readableBytes + 1 <= self.configuration.maximumBatchBytes else { break }
                batch.append(event)
                bytes += event.body.readableBytes + 1
            }
            return (batch, state.isShuttingDown)
        }
    }

    private func remove(_ count: Int, counting counter: WritableKeyPath<Stats, Int>) {
        let settled = self.state.withLock { state in
            state.buffer.removeFirst(min(count, state.buffer.count))
            state.stats[keyPath: counter] += count
            return state.settlementHandler.map { ($0, state.buffer.first?.ordinal ?? state.exported) }
        }
        if let (handler, count) = settled { handler(count) }
    }

    private func waitForWork() async {
        await untilFirst({ await self.waitForSignal() }, { try? await self.configuration.clock.sleep(for: self.configuration.flushInterval) })
    }

    /// Waits until a batch is full, a flush or shutdown is asked for, or the task is cancelled.
    private func waitForSignal() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = self.state.withLock { state -> Bool in
                    if state.isShuttingDown || state.buffer.count >= self.configuration.maximumBatchEvents || Task.isCancelled {
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }

    private func requestBody(_ batch: [Pending]) -> ByteBuffer {
        switch self.configuration.format {
        case .otlpLogs(let serviceName, let resourceAttributes):
            return OTLPLogEncoding.request(records: batch.lazy.map(\.body), serviceName: serviceName, resourceAttributes: resourceAttributes)
        case .metricsAPI:
            var body = ByteBufferAllocator().buffer(capacity: batch.reduce(128) { $0 + $1.body.readableBytes + 1 })
            body.writeString(#"{"app":"#)
            body.writeString(Self.jsonString(self.configuration.app))
            body.writeString(#","host":"#)
            body.writeString(Self.jsonString(self.configuration.host))
            body.writeString(#","events":["#)
            for (index, event) in batch.enumerated() {
                if index > 0 { body.writeString(",") }
                body.writeImmutableBuffer(event.body)
            }
            body.writeString("]}")
            return body
        }
    }

    private func send(_ batch: [Pending]) async -> Outcome {
        let parents = batch.lazy.compactMap { event in event.traceparent.map { DeliveryTracing.Headers(traceparent: $0, tracestate: event.tracestate) } }
        return await self.tracing.withSpan(self.configuration.format.deliverySpanName, parents: parents, attributes: ["trickle_relay.events": batch.count]) { context in
            await self.send(batch, traceContext: context)
        }
    }

    private func send(_ batch: [Pending], traceContext: DeliveryTracing.Headers?) async -> Outcome {
        if let handler = self.state.withLock({ $0.sendingHandler }), let first = batch.first, let last = batch.last {
            handler(first.ordinal, last.ordinal)
        }
        let body = self.requestBody(batch)
        var request = HTTPClientRequest(url: self.configuration.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        for (name, value) in self.configuration.headers { request.headers.add(name: name, value: value) }
        // The batch's W3C trace context: its events' own when they share one parent; a delivery span's (a child
        // of it, or linking several) when the relay traces.
        if let context = traceContext {
            request.headers.add(name: "traceparent", value: context.traceparent)
            if let tracestate = context.tracestate { request.headers.add(name: "tracestate", value: tracestate) }
        }
        // The same events always carry the same key, so a retried batch is recognisable as one.
        request.headers.add(name: "Idempotency-Key", value: "\(batch[0].id)+\(batch.count)")
        let key = self.apiKey()
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(body)
        if let tls = self.configuration.tls { request.tlsConfiguration = tls.configuration }
        do {
            let response = try await self.httpClient.execute(request, timeout: .seconds(30), logger: self.logger)
            let answer = (try? await response.body.collect(upTo: 4096)).map { String(buffer: $0) } ?? ""
            switch response.status.code {
            case 200..<300:
                if case .otlpLogs = self.configuration.format, let rejected = OTLPLogEncoding.rejectedRecords(inResponse: answer), rejected > 0 {
                    // OTLP's partial success: the receiver took the request but refused some records; it is final
                    // (the spec says not to retry), so it is counted and logged, not retried.
                    self.state.withLock { $0.stats.rejected += rejected }
                    self.logger.warning("OTLP receiver rejected log records of a batch", metadata: ["otlp.rejected": "\(rejected)", "metrics.events": "\(batch.count)"])
                }
                return .accepted
            case 400: return .rejected(TextParsing.trimmed(answer))
            case 401, 403: return .unauthorized(rejectedKey: key)
            case 413: return .tooLarge
            case 429: return .retryAfter(response.headers.first(name: "Retry-After").flatMap(Self.retryAfter))
            case 500..<600: return .failed("HTTP \(response.status.code)")
            default: return .rejected("HTTP \(response.status.code): \(answer)")
            }
        } catch {
            self.logger.debug("metrics request failed", metadata: ["error": "\(error)"])
            return .failed(await ConnectionProblem.diagnose(error, url: self.configuration.url).description)
        }
    }

    /// Parses a `Retry-After` value (for tests of the HTTP-date form).
    public static func retryAfterForTesting(_ value: String) -> Duration? { self.retryAfter(value) }

    /// `Retry-After` as seconds or an HTTP date.
    ///
    /// The value is the endpoint's word, not ours to trust: a wait longer than ``maximumRetryAfter`` is cut to it.
    static func retryAfter(_ value: String) -> Duration? {
        let trimmed = TextParsing.trimmed(value)
        guard !trimmed.isEmpty, trimmed.utf8.count <= 64 else { return nil }
        if trimmed.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            // Digits only: any count of them is a (possibly huge) number of seconds.
            guard let seconds = Int(trimmed) else { return Self.maximumRetryAfter }
            return min(.seconds(seconds), Self.maximumRetryAfter)
        }
        guard let date = TextParsing.httpDate(trimmed) else { return nil }
        let seconds = min(max(Double(date) - Date().timeIntervalSince1970, 0), Self.maximumRetryAfter / .seconds(1))
        return .milliseconds(Int64(seconds * 1000))
    }

    /// The longest `Retry-After` honoured: a longer one (or an absurd number) waits this long, then tries again.
    static let maximumRetryAfter = Duration.seconds(600)

    /// `{"type":<data.type>,"data":<data>,"id":<id>,"timestamp":<timestamp>}` from the raw envelope.
    static func eventBody(_ record: TelemetryRecord, format: Format = .metricsAPI) -> Pending? {
        let envelope = record.envelope
        if case .otlpLogs = format {
            guard let (body, fields) = OTLPLogEncoding.record(for: envelope, observedNanos: WallClock.unixNanoseconds()) else { return nil }
            return Pending(id: fields.id ?? "", body: body, traceparent: fields.traceparent, tracestate: fields.tracestate)
        }
        // The dispatcher validated the envelope: skim it for the members, no second validating scan.
        let ranges: (id: Range<Int>, timestamp: Range<Int>?, data: Range<Int>, type: Range<Int>?)? = envelope.withUnsafeReadableBytes { bytes in
            guard let id = JSONSkim.member("id", in: bytes), let data = JSONSkim.member("data", in: bytes),
                bytes[data.lowerBound] == UInt8(ascii: "{")
            else { return nil }
            let type = JSONSkim.member("type", in: UnsafeRawBufferPointer(rebasing: bytes[data])).map {
                (data.lowerBound + $0.lowerBound)..<(data.lowerBound + $0.upperBound)
            }
            return (id, JSONSkim.member("timestamp", in: bytes), data, type)
        }
        guard let (id, timestamp, data, type) = ranges else { return nil }
        func slice(_ range: Range<Int>) -> ByteBuffer { envelope.getSlice(at: envelope.readerIndex + range.lowerBound, length: range.count)! }
        var body = ByteBufferAllocator().buffer(capacity: data.count + 128)
        body.writeString(#"{"type":"#)
        if let type {
            body.writeImmutableBuffer(slice(type))
        } else {
            body.writeString("null")
        }
        body.writeString(#","data":"#)
        body.writeImmutableBuffer(slice(data))
        body.writeString(#","id":"#)
        body.writeImmutableBuffer(slice(id))
        body.writeString(#","timestamp":"#)
        if let timestamp { body.writeImmutableBuffer(slice(timestamp)) } else { body.writeString("null") }
        body.writeString("}")
        var idText = String(buffer: slice(id))
        while idText.hasPrefix("\"") { idText.removeFirst() }
        while idText.hasSuffix("\"") { idText.removeLast() }
        // The trace context, if any, from the `data` already found (two skims of it, no second pass over the rest).
        let (traceparent, tracestate): (String?, String?) = envelope.withUnsafeReadableBytes { bytes in
            let object = UnsafeRawBufferPointer(rebasing: bytes[data])
            func string(_ name: StaticString) -> String? {
                JSONSkim.stringContents(name, in: object).map { String(decoding: UnsafeRawBufferPointer(rebasing: object[$0]), as: UTF8.self) }
            }
            return (string("traceparent"), string("tracestate"))
        }
        return Pending(id: idText, body: body, traceparent: traceparent, tracestate: tracestate)
    }

    static func jsonString(_ text: String) -> String {
        let escaped = text.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"")
        return "\"\(escaped)\""
    }
}
