public import AsyncHTTPClient
public import Logging
public import NIOCore
import HTTPTypes
import NIOHTTP1
public import ServiceLifecycle
import Synchronization
import TrickleRelaySupport

/// Publishes a stream of segments to one trickle channel (`trickle-protocol.md` §1–§6).
///
/// Bytes written go into the current segment; ``finishSegment()`` ends it, and the next write opens the next
/// seq. Seqs are contiguous. The POST of the next segment is preconnected while the current one streams, so a
/// new segment starts without a round trip. The first POST starts at the live edge (`/next`) with
/// `Lp-Trickle-Reset`, unless configured otherwise. A POST that fails before sending body bytes (network error,
/// 5xx) is retried with back-off; one that fails part-way ends that segment (``Stats/failedSegments``), and the
/// next write opens a new one. `404` and `Lp-Trickle-Closed` are terminal.
///
/// ``run()`` performs the uploads and must run while writing; ``close()`` ends the stream (deleting the
/// channel, so readers see end of stream) and makes ``run()`` return.
///
/// ```swift
/// let publisher = TricklePublisher(url: url, httpClient: client, logger: logger)
/// try await withThrowingTaskGroup(of: Void.self) { group in
///     group.addTask { try await publisher.run() }
///     try await publisher.write(ByteBuffer(string: "hello\n"))
///     try await publisher.close()
/// }
/// ```
public actor TricklePublisher: Service {
    /// The channel.
    public nonisolated let url: TrickleChannelURL
    /// The configuration.
    public nonisolated let configuration: Configuration
    private nonisolated let httpClient: HTTPClient
    private nonisolated let logger: Logger
    private nonisolated let statsBox = RelayMutex(Stats())
    private nonisolated let failing: FailureLog
    private nonisolated let outcomeHandler = RelayMutex<(@Sendable (SegmentOutcome) -> Void)?>(nil)
    private nonisolated let uploads: AsyncStream<SegmentUpload>
    private nonisolated let uploadsContinuation: AsyncStream<SegmentUpload>.Continuation

    private var nextSeq: Int?
    private var pendingReset = false
    private var current: SegmentUpload?
    private var currentBytes = 0
    private var currentOpenedAt: RelayClock.Instant
    private var preconnected: SegmentUpload?
    /// Uploads that carry data and have not finished (the preconnect is not among them until it is used).
    private var inFlight: [SegmentUpload] = []
    private var terminalError: TrickleClientError?
    private var isClosed = false
    /// `run()` ended (cancelled): no upload would be performed, so no segment may be opened.
    private var hasStopped = false
    private nonisolated let closeCompleted = OneShotSignal<Void>()

    /// Creates a publisher. Nothing is sent until the first write.
    public init(
        url: TrickleChannelURL,
        httpClient: HTTPClient,
        configuration: Configuration = .init(),
        logger: Logger
    ) {
        self.url = url
        self.httpClient = httpClient
        self.configuration = configuration
        self.currentOpenedAt = configuration.clock.now
        var logger = logger
        logger[metadataKey: "trickle.channel"] = "\(url.channelName)"
        self.logger = logger
        self.failing = FailureLog("trickle server not accepting segments", logger: logger, clock: configuration.clock)
        (self.uploads, self.uploadsContinuation) = AsyncStream.makeStream()
    }

    /// The counters so far.
    public nonisolated var stats: Stats { self.statsBox.withLock { $0 } }

    /// How one segment's upload ended, with the units its writer counted into it (``write(_:maximumSegmentBytes:units:)``).
    public struct SegmentOutcome: Sendable, Hashable {
        /// The segment.
        public var seq: Int
        /// Whether the server acknowledged the whole segment (`200` after its last byte).
        public var accepted: Bool
        /// The units (e.g. telemetry lines) written into it.
        public var units: Int
        /// The second kind of units written into it (e.g. control lines), counted apart.
        public var otherUnits: Int = 0
        /// When the segment was opened, in Unix nanoseconds (its upload ended now).
        public var openedAtNanos: UInt64 = 0
    }

    /// Calls `handler` once per segment when its upload ends, accepted or not: how a writer learns which of
    /// its lines the server actually took. Set it before the first write.
    public nonisolated func onSegmentOutcome(_ handler: @escaping @Sendable (SegmentOutcome) -> Void) {
        self.outcomeHandler.withLock { $0 = handler }
    }

    /// The bytes written into the segment currently open (0 when none is).
    public var currentSegmentBytes: Int { self.current == nil ? 0 : self.currentBytes }

    /// Whether a segment is open.
    public var hasOpenSegment: Bool { self.current != nil }

    /// Performs the segment uploads until ``close()``; cancel it to abort them.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            for await upload in self.uploads {
                group.addTask { await self.perform(upload) }
            }
        }
        // Cancelled (a close that ran out of time): every segment still open or waiting ends as failed, so its
        // writer hears an outcome for every unit it wrote — none is left "written, fate unknown".
        self.abandonUnfinishedUploads()
    }

    private func abandonUnfinishedUploads() {
        self.hasStopped = true
        let abandoned = self.inFlight + [self.current, self.preconnected].compactMap { $0 }
        for upload in abandoned where upload.done.value == nil {
            upload.pipe.fail(TrickleClientError(.channelClosed, "the publisher stopped before the segment was sent"))
            upload.complete(.failed)
        }
        self.inFlight = []
        self.current = nil
        self.preconnected = nil
    }

    /// Appends bytes to the current segment, opening one if none is open.
    ///
    /// Suspends while more than ``Configuration/maximumBufferedBytes`` wait to be sent.
    ///
    /// - Parameters:
    ///   - bytes: The bytes; they are never split across segments.
    ///   - maximumSegmentBytes: If given, the current segment is finished first when these bytes would push it
    ///     past this size (a segment may still exceed it when a single write is larger).
    /// - Throws: ``TrickleClientError`` — `.channelNotFound`, `.channelClosed`, `.retriesExhausted` (terminal),
    ///   or `.segmentFailed` when the segment failed after the bytes were handed over.
    ///
    /// Once `bytes` are in a segment they are that segment's: this returns normally even if its upload fails
    /// while waiting for buffer space (the units are then reported by ``onSegmentOutcome(_:)`` as not accepted,
    /// and the next write opens a new segment or throws) — so a caller never counts the same units as both
    /// handed over and failed.
    public func write(
        _ bytes: ByteBuffer,
        maximumSegmentBytes: Int? = nil,
        units: Int = 0,
        otherUnits: Int = 0
    ) async throws(TrickleClientError) {
        if let terminalError { throw terminalError }
        guard !self.isClosed else { throw TrickleClientError(.channelClosed, "the publisher was closed") }
        if let maximumSegmentBytes, self.current != nil, self.currentBytes + bytes.readableBytes > maximumSegmentBytes {
            self.finishSegment()
        }
        var upload = try await self.openSegmentIfNeeded()
        do {
            try upload.pipe.append(bytes)
        } catch {
            // The open segment's upload failed: start a new segment once and put the bytes there.
            self.current = nil
            upload = try await self.openSegmentIfNeeded()
            do {
                try upload.pipe.append(bytes)
            } catch {
                throw self.terminalError ?? TrickleClientError(.segmentFailed, "the segment upload failed: \(error)")
            }
        }
        self.currentBytes += bytes.readableBytes
        upload.add(units: units, otherUnits: otherUnits)
        // Back-pressure only: a failed upload is reported through its outcome, and found by the next write.
        try? await upload.pipe.waitForCapacity()
    }

    /// Ends the current segment (no-op when none is open).
    public func finishSegment() {
        self.current?.pipe.finish()
        self.current = nil
    }

    /// Ends the current segment if it has been open for at least `age` (time-window rotation).
    ///
    /// Not while earlier segments still wait for the server (an outage): every window would otherwise leave one
    /// more segment retrying, and when the server came back they would all land at once, past its ring of five —
    /// the oldest evicted and lost. The current segment keeps growing instead (bounded by the writer's
    /// back-pressure; the caller's queue drops the oldest, counted).
    /// - Returns: Whether a segment was finished.
    @discardableResult
    public func finishSegment(ifOpenFor age: Duration) -> Bool {
        guard self.current != nil, self.configuration.clock.now - self.currentOpenedAt >= age else { return false }
        let waiting = self.inFlight.reduce(0) { count, upload in
            upload === self.current || upload.done.value != nil ? count : count + 1
        }
        guard waiting < Self.maximumSegmentsWaiting else { return false }
        self.finishSegment()
        return true
    }

    /// Earlier segments still unacknowledged past which the time window no longer rotates (the server's ring
    /// holds five; the current segment and the preconnected next one take two more).
    static let maximumSegmentsWaiting = 2

    /// Ends the stream: finishes the current segment, waits for its upload, deletes the channel (if
    /// configured) so readers see end of stream, and makes ``run()`` return.
    public func close() async throws {
        guard !self.isClosed else {
            // Another caller is closing: return when it is done.
            _ = await self.closeCompleted.wait()
            return
        }
        self.isClosed = true
        defer { self.closeCompleted.fulfill(()) }
        self.finishSegment()
        // Every segment must be on the server before the channel goes, or readers would lose its tail.
        for upload in self.inFlight { _ = await upload.done.wait() }
        self.inFlight = []
        // Abort the idle preconnect *before* deleting the channel: ended normally it would be an empty segment,
        // and arriving after the DELETE it would re-create the channel on an auto-creating server.
        if let preconnected = self.preconnected {
            preconnected.pipe.fail(TrickleClientError(.channelClosed, "the publisher was closed"))
            _ = await preconnected.done.wait()
            self.preconnected = nil
        }
        if self.configuration.deletesChannelOnClose && self.terminalError == nil {
            if self.configuration.lingerBeforeDelete > .zero {
                try? await self.configuration.clock.sleep(for: self.configuration.lingerBeforeDelete)  // readers fetch the tail
            }
            await self.deleteChannel()
        }
        self.uploadsContinuation.finish()
    }

    // MARK: Segments

    private func openSegmentIfNeeded() async throws(TrickleClientError) -> SegmentUpload {
        if let current { return current }
        if self.nextSeq == nil {
            let start = await self.resolveStart()
            if self.nextSeq == nil {
                self.nextSeq = start.seq
                self.pendingReset = start.reset
            }
        }
        if let terminalError { throw terminalError }
        if self.hasStopped { throw TrickleClientError(.channelClosed, "the publisher has stopped (its run() ended)") }
        if let current { return current }
        let seq = self.nextSeq!  // set above
        let upload: SegmentUpload
        self.inFlight.removeAll { $0.done.value != nil }
        if let preconnected, preconnected.seq == seq, !preconnected.pipe.isFinished, preconnected.pipe.failure == nil {
            upload = preconnected
        } else {
            upload = self.startUpload(seq: seq, sendsReset: self.pendingReset, predecessor: self.inFlight.last)
        }
        self.inFlight.append(upload)
        self.pendingReset = false
        self.nextSeq = seq + 1
        self.preconnected = self.startUpload(seq: seq + 1, sendsReset: false, predecessor: upload)
        self.current = upload
        self.currentBytes = 0
        self.currentOpenedAt = self.configuration.clock.now
        return upload
    }

    private func startUpload(seq: Int, sendsReset: Bool, predecessor: SegmentUpload?) -> SegmentUpload {
        let upload = SegmentUpload(
            seq: seq,
            sendsReset: sendsReset,
            maximumBufferedBytes: self.configuration.maximumBufferedBytes,
            retentionLimit: self.configuration.maximumResendBytes,
            predecessor: predecessor,
            onOutcome: self.outcomeHandler.withLock { $0 }
        )
        self.uploadsContinuation.yield(upload)
        return upload
    }

    private func resolveStart() async -> (seq: Int, reset: Bool) {
        switch self.configuration.start {
        case .seq(let seq):
            return (min(max(seq, 0), TrickleSeq.maximum), false)
        case .next:
            var request = HTTPClientRequest(url: self.url.url("/next"))
            request.method = .GET
            do {
                let response = try await self.httpClient.execute(request, timeout: .seconds(10), logger: self.logger)
                let body = try await response.body.collect(upTo: 1024)
                if response.status == .ok {
                    // Hostile like every reply (STYLE §6): a nextWrite out of range is a protocol error, not a seq.
                    let text = response.headers.first(name: TrickleHeaders.latest.rawName) ?? String(buffer: body)
                    if let latest = TrickleSeq.parseHeader(text) { return (latest, true) }
                    self.statsBox.withLock { $0.protocolErrors += 1 }
                    self.logger.warning(
                        "trickle /next answered a nextWrite out of range; starting at seq 0",
                        metadata: ["trickle.latest": "\(text.prefix(32))"]
                    )
                    return (0, true)
                }
                // 404: the channel does not exist yet (a POST may create it); 400: http-trickle has no /next.
                self.logger.debug("trickle /next unavailable, starting at seq 0", metadata: ["http.status": "\(response.status.code)"])
            } catch {
                self.logger.debug("trickle /next failed, starting at seq 0", metadata: ["error": "\(error)"])
            }
            return (0, true)
        }
    }

    private nonisolated func noteProblem(_ problem: ConnectionProblem) {
        self.statsBox.withLock { $0.lastConnectionProblem = problem }
    }

    private func markTerminal(_ error: TrickleClientError) {
        if self.terminalError == nil {
            self.terminalError = error
            self.logger.warning("trickle publisher stopped: nothing more will be published", metadata: ["error": "\(error)"])
        }
        self.current?.pipe.fail(error)
        self.preconnected?.pipe.fail(error)
    }

    // MARK: Uploads

    private nonisolated func perform(_ upload: SegmentUpload) async {
        var failures = 0
        while true {
            if let predecessor = upload.predecessorDone, failures > 0 || upload.predecessorHeldBack?.isSet == true {
                upload.isHeldBack.store(true, ordering: .releasing)  // and so is every later seq, behind this one
                // After a failure (a restarted server), segments reach the server in seq order again: a later seq
                // there first — a retried preconnect, or a new one opened while the one before is still being
                // re-sent — makes the server take the earlier seq for gone (a 470 to its reader, or a nextWrite
                // past it), and its events would be skipped. Bounded: the predecessor ends with its own body,
                // retries or failure; cancellation ends it too.
                _ = await predecessor.wait()
                if Task.isCancelled || upload.pipe.failure != nil {
                    upload.pipe.fail(CancellationError())
                    upload.complete(.failed)
                    return
                }
            }
            var request = HTTPClientRequest(url: self.url.url(seq: upload.seq))
            request.method = .POST
            request.headers.add(name: "Content-Type", value: self.configuration.mimeType)
            if upload.sendsReset { request.headers.add(name: TrickleHeaders.reset.rawName, value: "1") }
            // This attempt's body, fixed now: the client may make its iterator later, after this attempt failed.
            request.body = .stream(upload.pipe.attempt(), length: .unknown)
            self.statsBox.withLock { $0.attempts += 1 }
            let status: HTTPResponseStatus
            let channelClosed: Bool
            var explanation = ""  // the server's own words on a refusal, for the log line
            do {
                let response = try await self.httpClient.execute(
                    request,
                    deadline: TrickleHTTPClient.streamingDeadline,
                    logger: self.logger
                )
                let body = try? await response.body.collect(upTo: 64 * 1024)
                status = response.status
                if (400..<500).contains(status.code), let body {
                    // Printable ASCII only, and bounded: a reply is hostile like every input.
                    let text = String(decoding: body.readableBytesView.prefix(200).filter { $0 >= 0x20 && $0 < 0x7F }, as: UTF8.self)
                    if !text.isEmpty { explanation = ": \(text)" }
                }
                channelClosed = response.headers.first(name: TrickleHeaders.closed.rawName) != nil
            } catch {
                if Task.isCancelled || upload.pipe.failure != nil {
                    // Cancelled, or aborted on purpose (close, terminal error): nothing to retry.
                    upload.pipe.fail(CancellationError())
                    upload.complete(.failed)
                    return
                }
                // In words (a certificate problem names its cause and fix); the library's text at debug only.
                self.logger.debug("trickle POST failed", metadata: ["trickle.seq": "\(upload.seq)", "error": "\(error)"])
                let problem = await ConnectionProblem.diagnose(error, url: self.url.base)
                self.noteProblem(problem)
                if await self.shouldRetry(upload, failures: &failures, reason: problem.description) { continue }
                return
            }
            if channelClosed {
                await self.markTerminal(TrickleClientError(.channelClosed, "the server closed the channel (Lp-Trickle-Closed)"))
                upload.pipe.fail(TrickleClientError(.channelClosed, "channel closed"))
                upload.complete(upload.pipe.handedOutEverything && status == .ok ? .completed : .failed)
                return
            }
            switch status.code {
            case 200..<300 where upload.pipe.handedOutEverything:
                let bytes = upload.pipe.deliveredBytes
                self.statsBox.withLock {
                    $0.segments += 1
                    $0.bytes += bytes
                    if upload.sendsReset { $0.resets += 1 }
                }
                self.failing.cleared(metadata: ["trickle.seq": "\(upload.seq)"])
                self.statsBox.withLock { $0.lastConnectionProblem = nil }
                upload.complete(.completed)
                return
            case 200..<300:
                // Released before we finished the body: the seq was closed, reset or evicted by someone else (the
                // server answered before it had every byte, so what it did not get is counted as lost).
                self.segmentFailed(upload, reason: "the server released the segment early")
                return
            case 404:
                // The channel is gone: a restarted server, or a sweep. Create it again where the server allows it
                // (an orchestrator does not: then the session is over) and send the segment again.
                if self.configuration.recreatesChannel, await self.recreateChannel(),
                    await self.shouldRetry(upload, failures: &failures, reason: "HTTP 404 (channel re-created)")
                {
                    continue
                }
                await self.markTerminal(
                    TrickleClientError(.channelNotFound, "the server answered 404 for \(self.url): the channel does not exist")
                )
                upload.complete(.failed)
                return
            case 500..<600:
                if await self.shouldRetry(upload, failures: &failures, reason: "HTTP \(status.code)") { continue }
                return
            default:
                self.segmentFailed(upload, reason: "HTTP \(status.code)\(explanation)")
                return
            }
        }
    }

    /// Decides whether a failed attempt is retried, sleeping the back-off: always while no body byte was sent;
    /// after bytes went out, by sending the whole segment again from its first byte (it is still held, up to
    /// ``Configuration/maximumResendBytes``), so a server that lost it gets all of it.
    private nonisolated func shouldRetry(_ upload: SegmentUpload, failures: inout Int, reason: String) async -> Bool {
        failures += 1
        upload.isHeldBack.store(true, ordering: .releasing)
        // Every retry is a new attempt: the failed request's body gets nothing more, and bytes that went out are
        // sent again from the first.
        let resending = upload.pipe.deliveredBytes > 0
        guard upload.pipe.rewind() else {
            self.segmentFailed(upload, reason: reason)
            return false
        }
        if resending { self.statsBox.withLock { $0.resends += 1 } }
        if let maximum = self.configuration.maximumConsecutiveFailures, failures >= maximum {
            await self.markTerminal(
                TrickleClientError(
                    .retriesExhausted,
                    "\(failures) consecutive failed POSTs to \(self.url) (last: \(reason)); is the trickle server up?"
                )
            )
            upload.complete(.failed)
            return false
        }
        self.failing.failed(reason: reason, metadata: ["trickle.seq": "\(upload.seq)"])
        self.statsBox.withLock { $0.retries += 1 }
        do {
            try await self.configuration.clock.sleep(for: self.configuration.retryBackoff.delay(forAttempt: failures - 1))
        } catch {
            upload.complete(.failed)
            return false
        }
        return true
    }

    private nonisolated func segmentFailed(_ upload: SegmentUpload, reason: String) {
        self.failing.failed(reason: "segment \(upload.seq) failed part-way: \(reason)", metadata: ["trickle.seq": "\(upload.seq)"])
        self.statsBox.withLock { $0.failedSegments += 1 }
        upload.pipe.fail(TrickleClientError(.segmentFailed, "segment \(upload.seq) failed: \(reason)"))
        upload.complete(.failed)
    }

    /// `POST {channel}`: creates the channel again after a `404`. Returns whether the server did.
    private nonisolated func recreateChannel() async -> Bool {
        var request = HTTPClientRequest(url: self.url.url())
        request.method = .POST
        request.headers.add(name: TrickleHeaders.expectContent.rawName, value: self.configuration.mimeType)
        guard let response = try? await self.httpClient.execute(request, timeout: .seconds(10), logger: self.logger) else { return false }
        _ = try? await response.body.collect(upTo: 64 * 1024)
        guard (200..<300).contains(response.status.code) else { return false }
        self.statsBox.withLock { $0.channelRecreations += 1 }
        self.logger.warning("trickle channel was gone (404); created it again and re-sending", metadata: ["trickle.channel": "\(self.url)"])
        return true
    }

    private func deleteChannel() async {
        var request = HTTPClientRequest(url: self.url.url())
        request.method = .DELETE
        do {
            let response = try await self.httpClient.execute(request, timeout: .seconds(10), logger: self.logger)
            _ = try? await response.body.collect(upTo: 64 * 1024)
        } catch {
            self.logger.debug("trickle channel DELETE failed", metadata: ["error": "\(error)"])
        }
    }
}
