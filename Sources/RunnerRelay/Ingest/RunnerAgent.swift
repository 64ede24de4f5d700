public import AsyncHTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
public import Logging
import NIOCore
public import ServiceLifecycle
import Synchronization
import TrickleProtocol
public import TrickleRelaySupport

/// The multi-session runner agent: a loopback HTTP ingest API in front of one ``SessionRelay`` per session.
///
/// | route | what it does |
/// | --- | --- |
/// | `POST /v1/sessions` | start a session: `{"session_id","events_url","connection_id"?}` → 201 |
/// | `DELETE /v1/sessions/{id}` | flush within the deadline, close the channel, answer with what was sent and lost |
/// | `POST /v1/sessions/{id}/telemetry` | one JSON object or a JSONL body; 202 at once (queued, bounded) |
/// | `POST /v1/sessions/{id}/events` | control path, lossless; 503 with `Retry-After` when its queue is full |
/// | `GET /healthz` | liveness, never needs the token |
/// | `GET /metrics` | Prometheus text |
///
/// Bad input: invalid JSON → 400 naming the line; body over the cap → 413; unknown session → 404.
public final class RunnerAgent: Service, Sendable {
    private struct ManagedSession: Sendable {
        let relay: SessionRelay
        let done: OneShotSignal<SessionRelay.Summary>
    }

    public let configuration: Configuration
    private let httpClient: HTTPClient
    private let logger: Logger
    private let sessions = RelayMutex<[String: ManagedSession]>([:])
    private let finishedTotals = RelayMutex(TrickleEventsSink.Stats())
    private let finishedSegments = RelayMutex(0)
    /// Sessions refused at ``Configuration/maximumSessions``.
    private let sessionsRefused = RelayMutex(0)
    private let starts: AsyncStream<ManagedSession>
    private let startsContinuation: AsyncStream<ManagedSession>.Continuation
    private let listener: HTTPListener
    private let processStart: ContinuousClock.Instant

    /// Creates the agent.
    /// - Throws: ``StartupError`` when listening beyond loopback without a token.
    public init(
        configuration: Configuration,
        httpClient: HTTPClient,
        logger: Logger,
        processStart: ContinuousClock.Instant = .now
    ) throws {
        guard configuration.isLoopback || configuration.token != nil else {
            throw StartupError(
                description: "listening on \(configuration.host) exposes the ingest API beyond this machine: configure a bearer token, or listen on 127.0.0.1"
            )
        }
        self.configuration = configuration
        self.listener = HTTPListener(host: configuration.host, port: configuration.port)
        self.httpClient = httpClient
        self.logger = logger
        self.processStart = processStart
        (self.starts, self.startsContinuation) = AsyncStream.makeStream()
    }

    /// Waits until the ingest API listens; returns its port.
    public func waitUntilListening() async throws -> Int {
        try await self.listener.waitUntilListening()
    }

    /// Runs the API and every session until graceful shutdown, which stops intake and flushes every session.
    public func run() async throws {
        let application = self.listener.application(
            router: self.makeRouter(),
            logger: self.logger,
            idleTimeout: self.configuration.connectionIdleTimeout
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await application.run() }
            if let recording = self.configuration.metricsRecording {
                let recorder = MetricsRecorder(recording, bridge: self.configuration.metricsExposition?.bridge) { [weak self] in
                    self?.metricsSnapshot() ?? PrometheusText()
                }
                group.addTask { try await recorder.run() }
            }
            group.addTask {
                await withGracefulShutdownHandler {
                    await withDiscardingTaskGroup { sessions in
                        for await session in self.starts {
                            sessions.addTask { await self.runSession(session) }
                        }
                    }
                } onGracefulShutdown: {
                    self.startsContinuation.finish()
                }
            }
            do {
                // `next()`, not `waitForAll()`: the latter waits for every child before it rethrows, and the
                // sessions' intake below never ends by itself.
                while try await group.next() != nil {}
            } catch {
                // The API could not listen (a port in use) or failed: end the sessions' intake too, or the group
                // would wait on it forever and the process would keep running with no listener.
                self.listener.giveUp()
                group.cancelAll()
                throw error
            }
        }
    }

    /// Whether the ingest API came up.
    public var isListening: Bool { self.listener.isListening }

    private func runSession(_ session: ManagedSession) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await RelaySelfTelemetry(
                    relay: session.relay,
                    heartbeatInterval: self.configuration.heartbeatInterval,
                    processStart: self.processStart
                ).run()
            }
            // The session lasts as long as its relay (which flushes on finish or graceful shutdown).
            do {
                try await session.relay.run()
            } catch {
                self.logger.warning(
                    "session relay failed",
                    metadata: ["session.id": "\(session.relay.configuration.sink.identity.sessionID)", "error": "\(error)"]
                )
            }
            group.cancelAll()
        }
        let summary = session.relay.summary
        let id = summary.sessionID
        self.sessions.withLock { sessions in
            if sessions[id]?.relay === session.relay { sessions[id] = nil }
        }
        self.finishedTotals.withLock { $0 = $0 + summary.sink }
        self.finishedSegments.withLock { $0 += summary.segments }
        session.done.fulfill(summary)
        self.logger.info(
            "session ended",
            metadata: ["session.id": "\(id)", "sink.relayed": "\(summary.sink.relayed)", "sink.dropped": "\(summary.sink.dropped)"]
        )
    }

    // MARK: Routes

    private struct SessionRequest: Decodable {
        let session_id: String
        let events_url: String
        let connection_id: String?
    }

    private func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        if let token = self.configuration.token { router.add(middleware: BearerTokenMiddleware(token: token, openPaths: StaticPage.paths)) }
        RunnerLivePage.page.add(to: router)
        router.get("v1/sessions") { _, _ in
            // Running sessions, by id, each in the shape `DELETE /v1/sessions/{id}` answers with.
            let running = self.sessions.withLock { $0.sorted { $0.key < $1.key }.map(\.value) }
            let bodies = running.map { Self.endedSessionBody($0.relay.summary, eventsURL: $0.relay.configuration.eventsURL) }
            return Self.json(.ok, #"{"sessions":["# + bodies.joined(separator: ",") + "]}")
        }
        router.get("healthz") { _, _ in
            Self.json(.ok, #"{"status":"ok","sessions":\#(self.sessions.withLock { $0.count })}"#)
        }
        router.get("metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: self.metricsText()))
            )
        }
        router.post("v1/sessions") { request, _ in
            try await self.startSession(request)
        }
        router.delete("v1/sessions/:id") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let session = self.sessions.withLock({ $0[id] }) else { return Self.unknownSession(id) }
            session.relay.finish()
            guard let summary = await session.done.wait() else { throw CancellationError() }
            return Self.json(.ok, Self.endedSessionBody(summary, eventsURL: session.relay.configuration.eventsURL))
        }
        router.post("v1/sessions/:id/telemetry") { request, context in
            try await self.ingest(request, sessionID: context.parameters.get("id") ?? "", control: false)
        }
        router.post("v1/sessions/:id/events") { request, context in
            try await self.ingest(request, sessionID: context.parameters.get("id") ?? "", control: true)
        }
        return router
    }

    /// The answer to `DELETE /v1/sessions/{id}`: the same snake_case shape as the `POST` that started it, plus
    /// what the session relayed and lost.
    static func endedSessionBody(_ summary: SessionRelay.Summary, eventsURL: TrickleChannelURL) -> String {
        struct Body: Encodable {
            let session_id: String
            let events_url: String
            let segments: Int
            let failed_segments: Int
            let flushed_in_time: Bool
            let telemetry: TrickleEventsSink.Stats
            /// Why segments did not reach the server, in words (a certificate problem names its cause), if any.
            let connection_problem: String?
        }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        let body = Body(
            session_id: summary.sessionID,
            events_url: eventsURL.description,
            segments: summary.segments,
            failed_segments: summary.failedSegments,
            flushed_in_time: summary.flushedInTime,
            telemetry: summary.sink,
            connection_problem: summary.connectionProblem
        )
        return (try? encoder.encode(body)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    private func startSession(_ request: Request) async throws -> Response {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: 64 * 1024)
        } catch {
            return Self.json(.contentTooLarge, #"{"error":"a session request is at most 64 KiB"}"#)
        }
        let parsed: SessionRequest
        do {
            parsed = try JSONDecoder().decode(SessionRequest.self, from: Data(body.readableBytesView))
        } catch {
            return Self.error(.badRequest, "expected {\"session_id\":…,\"events_url\":…,\"connection_id\"?:…}")
        }
        if let problem = SessionIdentity.problem(withSessionID: parsed.session_id) { return Self.error(.badRequest, problem) }
        let url: TrickleChannelURL
        do {
            url = try TrickleChannelURL(parsed.events_url)
        } catch {
            return Self.error(.badRequest, "events_url must be http(s)://HOST[:PORT]/[BASE/]CHANNEL, got \(TrickleChannelURL.redacted(parsed.events_url))")
        }
        var sink = self.configuration.sinkDefaults
        sink.identity = SessionIdentity(
            sessionID: parsed.session_id,
            connectionID: parsed.connection_id,
            clientSource: self.configuration.sinkDefaults.identity.clientSource
        )
        let relay = SessionRelay(
            configuration: .init(eventsURL: url, sink: sink, writer: self.configuration.writer, flushTimeout: self.configuration.flushTimeout),
            httpClient: self.httpClient,
            logger: self.logger
        )
        let session = ManagedSession(relay: relay, done: OneShotSignal())
        enum Admission { case admitted, exists, full }
        let admission = self.sessions.withLock { sessions -> Admission in
            guard sessions[parsed.session_id] == nil else { return .exists }
            guard sessions.count < self.configuration.maximumSessions else { return .full }
            sessions[parsed.session_id] = session
            return .admitted
        }
        switch admission {
        case .admitted: break
        case .exists: return Self.error(.conflict, "session \(parsed.session_id) already exists")
        case .full:
            self.sessionsRefused.withLock { $0 += 1 }
            var response = Self.error(
                .serviceUnavailable,
                "the agent runs its maximum of \(self.configuration.maximumSessions) sessions (--max-sessions); end one, or retry later"
            )
            response.headers[.retryAfter] = "5"
            return response
        }
        if case .terminated = self.startsContinuation.yield(session) {
            self.sessions.withLock { $0[parsed.session_id] = nil }
            return Self.error(.serviceUnavailable, "the agent is shutting down")
        }
        self.logger.info("session started", metadata: ["session.id": "\(parsed.session_id)", "trickle.url": "\(url)"])
        return Self.json(.created, #"{"session_id":"\#(Self.escaped(parsed.session_id))","events_url":"\#(Self.escaped(url.description))"}"#)
    }

    private func ingest(_ request: Request, sessionID: String, control: Bool) async throws -> Response {
        guard let session = self.sessions.withLock({ $0[sessionID] }) else { return Self.unknownSession(sessionID) }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: self.configuration.maximumBodyBytes)
        } catch {
            return Self.error(.contentTooLarge, "body exceeds \(self.configuration.maximumBodyBytes) bytes; split it into several requests")
        }
        // Validate the whole body first: a 400 means nothing of it was taken.
        var framer = JSONLFramer(maximumLineBytes: self.configuration.maximumBodyBytes)
        var frames: [JSONLFramer.Frame] = []
        framer.feed(body, into: &frames)
        framer.finish(into: &frames)
        var lines: [ByteBuffer] = []
        for frame in frames {
            guard case .line(let line, let number, _) = frame else { continue }
            switch RunnerLine(line) {
            case .invalid(let reason):
                return Self.error(.badRequest, "line \(number): \(reason)")
            case .telemetry(let event) where !control:
                lines.append(event)
            case .control where !control:
                lines.append(line)  // a bare event posted to the telemetry route: stamp it
            case .telemetry, .control:
                lines.append(line)
            }
        }
        guard !lines.isEmpty else { return Self.error(.badRequest, "the body holds no JSON object") }
        if !control {
            // The request's W3C trace context applies to every event in it that has no valid one of its own.
            let trace = TraceContextHeaders.validate(
                traceparent: Self.singleHeader("traceparent", of: request),
                tracestate: Self.singleHeader("tracestate", of: request)
            )
            session.relay.sink.countInvalidTraceContext(trace.invalidValues)
            for line in lines { session.relay.sink.emit(line, traceContext: trace.context) }
            return Self.json(.accepted, #"{"accepted":\#(lines.count)}"#)
        }
        for (index, line) in lines.enumerated() where !session.relay.sink.trySendControl(line) {
            return Response(
                status: .serviceUnavailable,
                headers: [.retryAfter: "1", .contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"accepted":\#(index),"error":"the control queue is full; retry the rest after 1 s"}"#))
            )
        }
        return Self.json(.accepted, #"{"accepted":\#(lines.count)}"#)
    }

    /// A header's value; several `traceparent` headers are malformed (the spec allows one), and several
    /// `tracestate` headers are one list joined with commas.
    private static func singleHeader(_ name: String, of request: Request) -> String? {
        guard let field = HTTPField.Name(name) else { return nil }
        let values = request.headers[values: field]
        switch values.count {
        case 0: return nil
        case 1: return values[0]
        default: return name == "tracestate" ? values.joined(separator: ",") : "\(values.count) traceparent headers"
        }
    }

    // MARK: Metrics

    func metricsText() -> String {
        MetricsExposition.body(for: self.metricsSnapshot(), exposition: self.configuration.metricsExposition)
    }

    /// The agent's counters and gauges now, added up across live and finished sessions (what `/metrics` serves).
    public func metricsSnapshot() -> PrometheusText {
        let live = self.sessions.withLock { Array($0.values) }
        var totals = self.finishedTotals.withLock { $0 }
        var segments = self.finishedSegments.withLock { $0 }
        for session in live {
            totals = totals + session.relay.sink.stats
            segments += session.relay.writer.publisher.stats.segments
        }
        var text = PrometheusText()
        func metric(_ name: String, _ type: PrometheusText.MetricType, _ help: String, _ value: Int) { text.add(name, type, help, value) }
        metric("sessions_active", .gauge, "Sessions being relayed.", live.count)
        metric("sessions_refused_total", .counter, "Sessions refused at --max-sessions (503).", self.sessionsRefused.withLock { $0 })
        metric("telemetry_emitted_total", .counter, "Telemetry events handed to the agent while enabled.", totals.emitted)
        metric("telemetry_relayed_total", .counter, "Telemetry events the trickle server accepted (their segment was acknowledged).", totals.relayed)
        metric("telemetry_written_total", .counter, "Telemetry events handed to the events writers.", totals.written)
        metric("telemetry_lost_total", .counter, "Telemetry events in segments whose upload failed (reported downstream as lost).", totals.lost)
        metric("telemetry_dropped_total", .counter, "Telemetry events dropped (oldest first) because a queue was full.", totals.dropped)
        metric("telemetry_refused_total", .counter, "Telemetry events refused as larger than the line cap.", totals.refused)
        metric("telemetry_invalid_total", .counter, "Telemetry events that were not a JSON object with a type.", totals.invalid)
        metric("telemetry_disabled_total", .counter, "Telemetry events discarded because telemetry is off.", totals.disabled)
        metric("trace_context_invalid_total", .counter, "W3C traceparent/tracestate values dropped as malformed (never forwarded).", totals.traceContextInvalid)
        metric("control_events_total", .counter, "Control-path events written.", totals.controlWritten)
        metric("control_relayed_total", .counter, "Control-path events the trickle server accepted (their segment was acknowledged).", totals.controlRelayed)
        metric("bytes_written_total", .counter, "Bytes written onto events channels.", totals.bytesWritten)
        metric("segments_total", .counter, "Segments completed on events channels.", segments)
        metric("writer_errors_total", .counter, "Telemetry events the events writers failed to take.", totals.writerErrors)
        metric("control_lost_total", .counter, "Control events that could not be written (the channel was gone or refused them).", totals.controlLost)
        metric("telemetry_queued", .gauge, "Telemetry events waiting in queues.", totals.queuedEvents)
        return text
    }

    // MARK: Responses

    private static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    private static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        self.json(status, #"{"error":"\#(self.escaped(message))"}"#)
    }

    private static func unknownSession(_ id: String) -> Response {
        self.error(.notFound, "unknown session \(id); start it with POST /v1/sessions")
    }

    private static func escaped(_ text: String) -> String {
        var buffer = ByteBuffer()
        buffer.writeJSONString(text)
        return String(String(buffer: buffer).dropFirst().dropLast())
    }
}

extension TrickleEventsSink.Stats {
    static func + (lhs: Self, rhs: Self) -> Self {
        var sum = lhs
        sum.received += rhs.received
        sum.emitted += rhs.emitted
        sum.written += rhs.written
        sum.relayed += rhs.relayed
        sum.lost += rhs.lost
        sum.dropped += rhs.dropped
        sum.droppedBytes += rhs.droppedBytes
        sum.refused += rhs.refused
        sum.invalid += rhs.invalid
        sum.disabled += rhs.disabled
        sum.redactions += rhs.redactions
        sum.traceContextInvalid += rhs.traceContextInvalid
        sum.controlReceived += rhs.controlReceived
        sum.controlWritten += rhs.controlWritten
        sum.controlRelayed += rhs.controlRelayed
        sum.controlLostInSegments += rhs.controlLostInSegments
        sum.queuedControl += rhs.queuedControl
        sum.bytesWritten += rhs.bytesWritten
        sum.writerErrors += rhs.writerErrors
        sum.controlLost += rhs.controlLost
        sum.dropReports += rhs.dropReports
        sum.queuedEvents += rhs.queuedEvents
        sum.queuedBytes += rhs.queuedBytes
        return sum
    }
}
