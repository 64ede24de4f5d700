public import AsyncHTTPClient
import HTTPTypes
public import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import TrickleRelaySupport

/// Reads one trickle channel segment by segment, live (`trickle-protocol.md` §4, §5, §7, §10).
///
/// Bytes are handed over as they arrive, not when a segment ends. The subscriber follows the protocol's rules:
/// `470` with a smaller `Lp-Trickle-Latest` means we are ahead (wait and retry the same seq), with a larger one
/// that we fell behind (jump, and report the gap); `404` and `Lp-Trickle-Closed` end the stream (a `200`
/// carrying `Closed` is not data); an empty `200` is an empty segment; network errors and 5xx are retried with
/// back-off (resuming a segment where it broke off); a segment whose publisher died is abandoned once the
/// publisher has moved on; a segment larger than the limit is cut.
public final class TrickleSubscriber: Sendable {
    /// The channel.
    public let url: TrickleChannelURL
    /// The configuration.
    public let configuration: Configuration
    private let httpClient: HTTPClient
    private let logger: Logger
    private let statsBox = RelayMutex(Stats())
    private let unreachable: FailureLog
    private let protocolErrors: FailureLog
    /// Advanced by ``expectChannel()``.
    private let expected = GenerationSignal()
    /// ``Configuration/clock``, or real time on the HTTP client's event loops.
    private let clock: RelayClock
    /// ``Configuration/serverReturn``, or a watch of its own (real time only).
    private let serverReturn: ServerReturnWatch?

    /// Creates a subscriber; nothing is requested until ``run(_:)``.
    public init(url: TrickleChannelURL, httpClient: HTTPClient, configuration: Configuration = .init(), logger: Logger) {
        self.url = url
        self.httpClient = httpClient
        self.configuration = configuration
        self.clock = configuration.clock ?? .eventLoopTimers(httpClient.eventLoopGroup)
        self.serverReturn =
            self.clock.timerEventLoops == nil ? nil : configuration.serverReturn ?? HTTPOrigin(url: url.base).map { ServerReturnWatch(origin: $0) }
        var logger = logger
        logger[metadataKey: "trickle.channel"] = "\(url.channelName)"
        self.logger = logger
        self.unreachable = FailureLog("trickle server not answering the subscriber", logger: logger)
        self.protocolErrors = FailureLog("trickle server answers break the protocol", logger: logger)
    }

    /// Says the channel is expected to exist now (its runner started): a subscriber waiting for it asks at once,
    /// then again at short intervals that grow as before. No effect once the channel has answered.
    public func expectChannel() {
        self.expected.advance()
    }

    /// The counters so far.
    public var stats: Stats { self.statsBox.withLock { $0 } }

    /// Reads the channel until end of stream, handing every event to `handle` in order.
    ///
    /// - Returns: Why the stream ended.
    /// - Throws: ``TrickleClientError`` (`.retriesExhausted`, `.unexpectedStatus`), `CancellationError`, or
    ///   whatever `handle` throws.
    ///
    /// It runs where its caller runs (`nonisolated(nonsending)`): a followed channel's event loop, for one.
    nonisolated(nonsending) public func run(
        _ handle: nonisolated(nonsending) @escaping @Sendable (TrickleSubscriberEvent) async throws -> Void
    ) async throws -> EndOfStream {
        do {
            return try await self.follow(handle)
        } catch let failure as HandlerFailure {
            // The caller's own decision (its output went away, say): it ends the subscription as thrown.
            throw failure.underlying
        }
    }

    /// An error the caller's handler threw while a segment body was read: it must end the subscription, never be
    /// taken for a broken body and retried.
    struct HandlerFailure: Error {
        let underlying: any Error
    }

    /// Hands `event` to the caller, marking what it throws as the caller's.
    nonisolated(nonsending) private static func handing(
        _ event: TrickleSubscriberEvent,
        to handle: nonisolated(nonsending) @escaping @Sendable (TrickleSubscriberEvent) async throws -> Void
    ) async throws {
        do {
            try await handle(event)
        } catch let error as CancellationError {
            throw error
        } catch {
            throw HandlerFailure(underlying: error)
        }
    }

    nonisolated(nonsending) private func follow(
        _ handle: nonisolated(nonsending) @escaping @Sendable (TrickleSubscriberEvent) async throws -> Void
    ) async throws -> EndOfStream {
        var seq = self.configuration.start.rawSeq
        var resumeOffset = 0
        var failures = 0
        var aheadCount = 0
        var channelAnswered = false
        var waitingSince: RelayClock.Instant?
        var waitingPolls = 0
        // Told the channel is expected (the control API) or announced since waiting began: asks short again.
        var toldSinceWaiting = false
        // Whether the next ask for a channel that is not there yet goes to `/next` (see the ask below).
        var asksWithNext = false
        var nextUnsupported = false
        // Set while the channel is missing (404) or the server unreachable after it had answered: the grace
        // period runs from here (§7: without a clean close, a 404 may be a restarting server).
        var lostSince: RelayClock.Instant?
        // Whether the last back-off was cut short by the server's return: the next one is not (a server that
        // accepts connections but fails every GET — a TLS mismatch, say — must not be asked in a tight loop).
        var askedOnReturn = false
        let connection = self.makeConnection()
        defer { connection?.close() }
        // Registered with the server's announcements until the channel answers — from before the first ask, so an
        // announcement made while that ask is on its way is not missed.
        var announcedBy: ChannelAnnouncements?
        if self.configuration.channelWaitTimeout != nil, let announcements = self.configuration.announcements {
            announcements.register(channel: self.url.channelName, self.expected)
            announcedBy = announcements
        }
        defer { announcedBy?.unregister(channel: self.url.channelName, self.expected) }
        while true {
            try Task.checkCancellation()
            // Before the ask: an "expected now" that arrives while it is on its way still cuts the wait after it.
            let expectedBeforeAsk = self.expected.generation
            self.statsBox.withLock { $0.attempts += 1 }
            var probe = ChannelNextWrite.unknown
            if asksWithNext, waitingPolls > 0 {
                // Waiting minutes apart: asked with `GET …/next` over the shared client's kept-alive connections
                // (a few per server, not a new connection per waiting channel and ask); the segment GET on the
                // subscription's own connection follows once the channel exists. A server without `/next` (the
                // sample server answers 400) is asked with the GET from then on.
                probe = await self.fetchNextWrite()
                if probe == .unsupported { nextUnsupported = true }
            }
            let attempt =
                probe == .notFound ? Attempt.notFound : try await self.attempt(seq: seq, skipping: resumeOffset, connection: connection, handle)
            if case .unreachable = attempt {} else { askedOnReturn = false }
            switch attempt {
            case .notFound, .failed, .unreachable: break
            default:
                channelAnswered = true
                asksWithNext = false
                if let announcements = announcedBy {
                    announcements.unregister(channel: self.url.channelName, self.expected)
                    announcedBy = nil
                }
                if let since = lostSince {
                    lostSince = nil
                    self.noteBack(seq: seq, offset: resumeOffset, since: since)
                }
            }
            switch attempt {
            case .closed:
                return .closed
            case .notFound where channelAnswered:
                // A 404 after data without a clean close: maybe a server restarting. Keep asking for the same seq
                // (and offset) until the grace runs out; a clean close (Lp-Trickle-Closed) still ends at once.
                let now = self.clock.now
                if lostSince == nil {
                    lostSince = now
                    self.noteLost(seq: seq)
                }
                guard now - lostSince! < self.configuration.reconnectGrace else {
                    self.noteGraceExpired(seq: seq)
                    return .notFound
                }
                try await self.clock.sleep(for: min(self.configuration.retryBackoff.delay(forAttempt: 2), .seconds(1)))
            case .notFound:
                // A channel that never answered may just not exist yet: wait for it, if asked to.
                guard !channelAnswered, let timeout = self.configuration.channelWaitTimeout else { return .notFound }
                let now = self.clock.now
                if waitingSince == nil {
                    waitingSince = now
                    self.noteWaiting()
                }
                guard now - waitingSince! < timeout else { return .notFound }
                let delay = min(
                    self.channelWaitDelay(announced: announcedBy?.isFollowing == true, told: toldSinceWaiting, polls: waitingPolls),
                    timeout - (now - waitingSince!)
                )
                waitingPolls += 1
                if delay >= self.configuration.channelWaitAsksSharedAfter {
                    // Minutes apart, the next ask would find the server has closed the idle connection anyway:
                    // neither side holds a socket for a channel that is not there.
                    connection?.close()
                    asksWithNext = self.configuration.usesOwnConnection && !nextUnsupported
                }
                if await self.expected.wait(past: expectedBeforeAsk, timeout: TimeAmount(max(delay, .zero)), on: self.httpClient.eventLoopGroup.any()) {
                    waitingPolls = 0
                    toldSinceWaiting = true
                }
                try Task.checkCancellation()
            case .failed(let reason):
                try await self.failed(&failures, reason: reason)
            case .unreachable(let reason):
                // The server did not answer: back off, but ask again the moment it accepts connections again — a
                // server restarted after an outage is sent a burst of held segments at once, and its ring of five
                // does not wait for a reader still in a 5 s back-off (the long-outage loss).
                askedOnReturn = try await self.failed(&failures, reason: reason, untilReturnOf: askedOnReturn ? nil : self.serverReturn)
            case .protocolError(let reason):
                // A reply we cannot act on (a header out of range, a seq we did not ask for): counted, logged
                // once, and retried with back-off like any other failure — never trusted, never a trap.
                self.statsBox.withLock { $0.protocolErrors += 1 }
                self.protocolErrors.failed(reason: reason, metadata: ["trickle.seq": "\(seq)"])
                try await self.failed(&failures, reason: reason)
            case .abandonedBeforeStart:
                // Waited on a seq whose publisher moved on without ever writing it (a dead preconnect), or, when
                // resuming an interrupted segment, on one whose publisher died: a started segment still ends.
                if resumeOffset > 0 {
                    self.statsBox.withLock { $0.segments += 1 }
                    try await handle(.segmentEnded(seq: seq, .stalled(bytes: resumeOffset)))
                }
                failures = 0
                resumeOffset = 0
                seq += 1  // seq ≤ TrickleSeq.maximum: checked when it was parsed or configured
            case .segment(let servedSeq, .interrupted(let delivered)):
                // Resume the same segment after the bytes already handed over.
                if seq >= 0, servedSeq > seq { try await self.reportGap(from: seq, to: servedSeq, handle) }
                resumeOffset = delivered
                seq = servedSeq
                try await self.failed(&failures, reason: "segment body interrupted")
            case .segment(let servedSeq, .ended(let end)):
                if seq >= 0, servedSeq > seq { try await self.reportGap(from: seq, to: servedSeq, handle) }
                failures = 0
                aheadCount = 0
                resumeOffset = 0
                seq = servedSeq + 1
                try await handle(.segmentEnded(seq: servedSeq, end))
            case .notRetained(let servedSeq, let latest):
                failures = 0
                // Leaving a segment we were inside (an interrupted one we were resuming): it still ends.
                func leaveResumedSegment() async throws {
                    guard resumeOffset > 0 else { return }
                    self.statsBox.withLock { $0.segments += 1 }
                    try await handle(.segmentEnded(seq: seq, .stalled(bytes: resumeOffset)))
                    resumeOffset = 0
                }
                if latest > servedSeq {
                    // Fell behind: the seq was evicted (§4). The SDK jumps to the live edge; the ring may still hold
                    // the segments just below it, so start at the oldest it can hold and report only what lies
                    // before as lost. `servedSeq + 1` at least, so a ring smaller than assumed still moves on.
                    aheadCount = 0
                    try await leaveResumedSegment()
                    let oldestHeld = latest - min(max(self.configuration.retainedSegments, 0), latest)
                    let next = min(max(servedSeq + 1, oldestHeld), latest)
                    try await self.reportGap(from: servedSeq, to: next, handle)
                    seq = next
                } else {
                    // Ahead of the publisher: wait and ask again, unless the channel was evidently recreated — a
                    // publisher writing seqs below ours. A channel where nothing is written yet (a restarted server:
                    // nextWrite 0) is no evidence: its publisher may be about to re-send this very seq, and
                    // resyncing would skip the rest of it (the long-outage loss under a slow runner).
                    if latest > 0 { aheadCount += 1 }
                    if aheadCount > self.configuration.maximumAheadRetries {
                        self.noteResync(seq: servedSeq, latest: latest)
                        aheadCount = 0
                        try await leaveResumedSegment()
                        seq = latest
                    } else {
                        // Waiting for the same seq (a restarted server not yet re-sent to): keep the offset.
                        seq = servedSeq
                        try await self.clock.sleep(for: self.configuration.aheadRetryDelay)
                    }
                }
            }
        }
    }

    /// The outcome of one GET.
    private enum Attempt: Sendable {
        case closed
        case notFound
        /// An answer that is a failure (5xx): retried with back-off.
        case failed(String)
        /// No answer (connection refused, reset, timed out): retried with back-off or when the server is back.
        case unreachable(String)
        case protocolError(String)
        case notRetained(seq: Int, latest: Int)
        case segment(seq: Int, BodyEnd)
        case abandonedBeforeStart
    }

    /// One GET of `seq`, watched for a stall.
    ///
    /// On the subscriber's own connection in real time (the default), the GET is read in this task and an
    /// event-loop timer watches it (``StallTimer``): no task per segment, and one stack per followed channel — at
    /// 10,000 channels, 24 MiB less resident and a task, a task group and their wake-ups less per segment. Through
    /// the shared HTTP client (HTTP/2), whose request only cancelling its task can end, or on a test's clock, the GET
    /// runs in a child task this one watches.
    ///
    /// (Neither way is inlined here, nor this into the follow loop: a followed channel keeps the deepest frames its
    /// task ever had.)
    @inline(never)
    private func attempt(
        seq: Int,
        skipping skip: Int,
        connection: SegmentConnection?,
        _ handle: nonisolated(nonsending) @escaping @Sendable (TrickleSubscriberEvent) async throws -> Void,
        isolation: isolated (any Actor)? = #isolation
    ) async throws -> Attempt {
        let progress = Progress(clock: self.clock)
        if let connection, let loops = self.clock.timerEventLoops {
            return try await self.attemptInThisTask(seq: seq, skipping: skip, connection: connection, progress: progress, loops: loops, handle, isolation: isolation)
        }
        return try await self.attemptInChildTask(seq: seq, skipping: skip, connection: connection, progress: progress, handle, isolation: isolation)
    }

    /// The GET in a child task, this one waking when it ends or when the stall timeout would pass (an event-loop
    /// timer or the test's clock: ``AwaitedOutcome``), and checking.
    @inline(never)
    private func attemptInChildTask(
        seq: Int,
        skipping skip: Int,
        connection: SegmentConnection?,
        progress: Progress,
        _ handle: nonisolated(nonsending) @escaping @Sendable (TrickleSubscriberEvent) async throws -> Void,
        isolation: isolated (any Actor)?
    ) async throws -> Attempt {
        let outcome = AwaitedOutcome<Result<Attempt?, any Error>>()
        return try await withThrowingTaskGroup(of: Void.self) { group in
            // The request keeps the caller's isolation (passed on: a child task does not inherit it).
            group.addTask {
                _ = isolation
                let result: Result<Attempt?, any Error>
                do {
                    result = .success(try await self.request(seq: seq, skipping: skip, connection: connection, progress: progress, handle, isolation: isolation))
                } catch {
                    result = .failure(error)
                }
                outcome.fulfill(result)
            }
            defer { group.cancelAll() }
            while true {
                // Wakes when the stall timeout would pass if nothing arrives meanwhile: once per timeout on a busy
                // or quiet channel (asking for seq -1 is never a stall: the server answers at once).
                let due = seq >= 0 ? self.nextStallCheck(progress: progress) : nil
                if let result = await outcome.wait(upTo: due, clock: self.clock) {
                    return try result.get() ?? .failed("request ended without an outcome")
                }
                try Task.checkCancellation()
                if seq >= 0, let stalled = await self.checkForStall(seq: seq, progress: progress) { return stalled }
            }
        }
    }

    /// The GET read in this task, an event-loop timer watching it: a stall it decides closes the connection under
    /// the GET, and its outcome is the attempt's.
    @inline(never)
    private func attemptInThisTask(
        seq: Int,
        skipping skip: Int,
        connection: SegmentConnection,
        progress: Progress,
        loops: any EventLoopGroup,
        _ handle: nonisolated(nonsending) @escaping @Sendable (TrickleSubscriberEvent) async throws -> Void,
        isolation: isolated (any Actor)?
    ) async throws -> Attempt {
        // Asking for seq -1 is never a stall: the server answers at once.
        let watch = seq < 0 ? nil : self.stallTimer(seq: seq, progress: progress, connection: connection, loop: loops.any())
        let result: Result<Attempt?, any Error>
        do {
            result = .success(try await self.request(seq: seq, skipping: skip, connection: connection, progress: progress, handle, isolation: isolation))
        } catch {
            result = .failure(error)
        }
        let stalled = watch?.finish()
        connection.endGet()
        if case .failure(let error) = result, error is HandlerFailure || Task.isCancelled { throw error }
        if let stalled { return stalled }
        return try result.get() ?? .failed("request ended without an outcome")
    }

    /// Checks `seq`'s GET once the stall timeout would pass with nothing arriving, and again as long as it reads.
    @inline(never)
    private func stallTimer(seq: Int, progress: Progress, connection: SegmentConnection, loop: any EventLoop) -> StallTimer<Attempt> {
        StallTimer(
            loop: loop,
            firstCheckIn: self.configuration.stallTimeout,
            check: {
                if let stalled = await self.checkForStall(seq: seq, progress: progress) { return .decided(stalled) }
                return .checkAgain(in: self.nextStallCheck(progress: progress))
            },
            decided: { connection.abandonCurrentGet() }
        )
    }

    /// When the stall timeout would pass if nothing arrives meanwhile (at least 1/16 of it from now).
    private func nextStallCheck(progress: Progress) -> Duration {
        let timeout = self.configuration.stallTimeout
        return max(progress.snapshot.lastByteAt + timeout - self.clock.now, timeout / 16)
    }

    @inline(never)
    private func request(
        seq: Int,
        skipping skip: Int,
        connection: SegmentConnection?,
        progress: Progress,
        _ handle: nonisolated(nonsending) @escaping @Sendable (TrickleSubscriberEvent) async throws -> Void,
        isolation: isolated (any Actor)?
    ) async throws -> Attempt? {
        var response: SegmentReply
        do {
            response = try await SegmentReply.get(self.url.url(seq: seq), connection: connection, httpClient: self.httpClient, logger: self.logger)
        } catch {
            try Task.checkCancellation()
            // Abandoned by the stall watchdog, which supplies the outcome: not a connection problem.
            if progress.isAbandoned { return nil }
            return await self.requestFailed(seq: seq, error)
        }
        defer { response.finish() }
        switch self.classify(status: response.status, headers: response.headers, seq: seq) {
        case .body(let servedSeq):
            // nil: the watchdog abandoned the segment and supplies the outcome.
            return try await self.consume(&response, seq: servedSeq, skipping: skip, progress: progress, handle)
                .map { .segment(seq: servedSeq, $0) }
        case .drained(let attempt):
            await Self.drain(&response)
            return attempt
        case .unexpected:
            throw await self.unexpectedStatus(&response, seq: seq)
        }
    }

    /// Reads a reply's body (up to 64 KiB) and drops it, so its connection can carry the next GET.
    @inline(never)
    private static func drain(_ response: inout SegmentReply) async {
        _ = try? await response.collect(upTo: 64 * 1024)
    }

    /// What a reply head says: a segment body to read, an outcome (its body read and dropped), or a status we do
    /// not expect.
    private enum ReplyReading {
        case body(servedSeq: Int)
        case drained(Attempt)
        case unexpected
    }

    /// Reads a reply head. Every number in a reply is hostile (STYLE §6): parsed once, bounded, and checked
    /// against what we asked. (Synchronous and never inlined: see "Out of the follow loop".)
    @inline(never)
    private func classify(status: Int, headers: HTTPHeaders, seq: Int) -> ReplyReading {
        self.unreachable.cleared()
        self.statsBox.withLock { $0.lastConnectionProblem = nil }
        if headers.first(name: TrickleHeaders.closed.rawName) != nil {
            // A 200 carrying `Closed` is end of stream, never data (§10.1).
            return .drained(.closed)
        }
        let servedSeq: Int
        if let text = headers.first(name: TrickleHeaders.seq.rawName) {
            guard let parsed = TrickleSeq.parseHeader(text) else {
                return .drained(.protocolError("Lp-Trickle-Seq out of range or not a number on a \(status) reply"))
            }
            servedSeq = parsed
        } else if seq >= 0 || status != 200 {
            servedSeq = seq
        } else {
            return .drained(.protocolError("a 200 reply to GET \(seq) without Lp-Trickle-Seq"))
        }
        if seq >= 0, status == 200, servedSeq != seq {
            return .drained(.protocolError("GET \(seq) was answered with segment \(servedSeq)"))
        }
        switch status {
        case 200:
            return .body(servedSeq: servedSeq)
        case 404:
            return .drained(.notFound)
        case 470:  // TrickleHeaders.notRetainedStatus
            guard let latest = headers.first(name: TrickleHeaders.latest.rawName).flatMap({ TrickleSeq.parseHeader($0) }) else {
                return .drained(.protocolError("470 without a valid Lp-Trickle-Latest"))
            }
            return .drained(.notRetained(seq: servedSeq, latest: latest))
        case 500..<600:
            return .drained(.failed("HTTP \(status)"))
        default:
            return .unexpected
        }
    }

    /// The error for a status the protocol does not have, with the start of the reply's body.
    private func unexpectedStatus(_ response: inout SegmentReply, seq: Int) async -> TrickleClientError {
        let body = (try? await response.collect(upTo: 4096)).map { String(buffer: $0) } ?? ""
        return TrickleClientError(
            .unexpectedStatus,
            "GET \(self.url)/\(seq) answered \(response.status) (\(body.trimmingWhitespace())); expected 200, 404 or 470"
        )
    }

    /// A GET that failed before its reply head: diagnosed (what the connection problem is), kept for the
    /// subscription's listing, and retried by the caller.
    @inline(never)
    private func requestFailed(seq: Int, _ error: any Error) async -> Attempt {
        self.logger.debug("trickle GET failed", metadata: ["trickle.seq": "\(seq)", "error": "\(error)"])
        let problem = await ConnectionProblem.diagnose(error, url: self.url.base)
        self.statsBox.withLock { $0.lastConnectionProblem = problem }
        return .unreachable(problem.description)
    }

    // MARK: Out of the follow loop
    //
    // Synchronous work of the follow loop, kept out of it (never inlined): an async function's frame holds every
    // local its inlined code needs, and each followed channel keeps the deepest frames it ever had.

    /// The subscriber's own connection (plain `http`), or `nil` to read through the shared HTTP client.
    @inline(never)
    private func makeConnection() -> SegmentConnection? {
        guard self.configuration.usesOwnConnection else { return nil }
        return SegmentConnection(
            url: self.url,
            group: self.httpClient.eventLoopGroup,
            tls: self.configuration.tls ?? OutboundTLSContext.system,
            connectTimeout: self.configuration.connectTimeout
        )
    }

    @inline(never)
    private func noteResync(seq: Int, latest: Int) {
        self.logger.debug("trickle subscriber resyncing to nextWrite", metadata: ["trickle.seq": "\(seq)", "trickle.latest": "\(latest)"])
        self.statsBox.withLock { $0.resets += 1 }
    }

    @inline(never)
    private func noteBack(seq: Int, offset: Int, since: RelayClock.Instant) {
        self.statsBox.withLock { $0.reconnects += 1 }
        self.logger.warning(
            "trickle channel is back; resuming",
            metadata: ["trickle.seq": "\(seq)", "trickle.offset": "\(offset)", "trickle.gone_ms": "\((self.clock.now - since).components.seconds * 1000)"]
        )
    }

    @inline(never)
    private func noteLost(seq: Int) {
        guard self.configuration.reconnectGrace > .zero else { return }
        self.logger.warning(
            "trickle channel answered 404 without a clean close; waiting for it to come back",
            metadata: ["trickle.seq": "\(seq)", "trickle.grace_s": "\(self.configuration.reconnectGrace.components.seconds)"]
        )
    }

    @inline(never)
    private func noteGraceExpired(seq: Int) {
        guard self.configuration.reconnectGrace > .zero else { return }
        self.statsBox.withLock { $0.reconnectGraceExpired = true }
        self.logger.warning("trickle channel did not come back within the reconnect grace; ending", metadata: ["trickle.seq": "\(seq)"])
    }

    @inline(never)
    private func noteWaiting() {
        self.logger.info("waiting for the events channel to be created", metadata: ["trickle.channel": "\(self.url)"])
    }

    /// The delay before asking again for a channel that is not there yet: growing to minutes, or at once when
    /// told the channel is expected (or announced). While the server's feed is followed it says when the channel
    /// appears: until told, the subscriber's own asks are a rare backstop
    /// (``Configuration/channelWaitMaximumDelayWhenAnnounced``).
    @inline(never)
    private func channelWaitDelay(announced: Bool, told: Bool, polls: Int) -> Duration {
        let maximumDelay =
            announced
            ? max(self.configuration.channelWaitMaximumDelayWhenAnnounced, self.configuration.channelWaitMaximumDelay)
            : self.configuration.channelWaitMaximumDelay
        let backoff =
            announced && !told
            ? Backoff(initial: maximumDelay, maximum: maximumDelay)
            : Backoff(initial: self.configuration.aheadRetryDelay, maximum: maximumDelay)
        return backoff.delay(forAttempt: polls)
    }

    nonisolated(nonsending) private func reportGap(
        from: Int,
        to: Int,
        _ handle: nonisolated(nonsending) @Sendable (TrickleSubscriberEvent) async throws -> Void
    ) async throws {
        guard to > from else { return }
        self.statsBox.withLock { $0.gaps = $0.gaps.addingReportingOverflow(to - from).overflow ? .max : $0.gaps + (to - from) }
        self.logger.debug("trickle subscriber skipped segments", metadata: ["trickle.from": "\(from)", "trickle.to": "\(to)"])
        try await handle(.gap(from: from, to: to))
    }

    /// Counts a failed attempt and waits its back-off (or, given a watch, until its server is back if sooner).
    ///
    /// - Returns: Whether the wait was cut short by the server's return.
    @discardableResult
    nonisolated(nonsending) private func failed(
        _ failures: inout Int,
        reason: String,
        untilReturnOf watch: ServerReturnWatch? = nil
    ) async throws -> Bool {
        failures += 1
        if let maximum = self.configuration.maximumConsecutiveFailures, failures >= maximum {
            throw TrickleClientError(
                .retriesExhausted,
                "\(failures) consecutive failed GETs on \(self.url) (last: \(reason)); is the trickle server up?"
            )
        }
        self.statsBox.withLock { $0.retries += 1 }
        self.unreachable.failed(reason: reason)
        let delay = self.configuration.retryBackoff.delay(forAttempt: failures - 1)
        guard let watch, let loops = self.clock.timerEventLoops else {
            try await self.clock.sleep(for: delay)
            return false
        }
        let spread = await watch.waitForReturn(upTo: delay, on: loops)
        try Task.checkCancellation()
        guard let spread else { return false }
        self.logger.debug("trickle server accepts connections again; asking now")
        if spread > .zero { try await self.clock.sleep(for: spread) }
        return true
    }

    // MARK: Segment bodies

    private enum BodyEnd: Sendable {
        case ended(TrickleSegmentEnd)
        case interrupted(delivered: Int)
    }

    /// Tracks the progress of one body for the stall watchdog.
    private final class Progress: Sendable {
        private struct State {
            var lastByteAt: RelayClock.Instant
            var received = 0
            var bodyStarted = false
            var isAbandoned = false
        }

        private let clock: RelayClock
        private let state: RelayMutex<State>

        init(clock: RelayClock) {
            self.clock = clock
            self.state = RelayMutex(State(lastByteAt: clock.now))
        }

        /// Notes bytes received; `false` once the watchdog abandoned the segment (the bytes are then dropped).
        func note(bytes: Int) -> Bool {
            let now = self.clock.now
            return self.state.withLock {
                guard !$0.isAbandoned else { return false }
                $0.lastByteAt = now
                $0.received += bytes
                return true
            }
        }

        func touch() {
            let now = self.clock.now
            self.state.withLock { $0.lastByteAt = now }
        }

        /// Marks the body as started; `false` once the watchdog abandoned the segment.
        func startBody() -> Bool {
            self.state.withLock {
                guard !$0.isAbandoned else { return false }
                $0.bodyStarted = true
                return true
            }
        }

        /// Abandons the segment if no byte arrived since `lastByteAt`, atomically with the consumer's view:
        /// returns whether its body had started and how much was received, or `nil` when bytes came meanwhile.
        func abandon(ifIdleSince lastByteAt: RelayClock.Instant) -> (bodyStarted: Bool, received: Int)? {
            self.state.withLock {
                guard $0.lastByteAt == lastByteAt else { return nil }
                $0.isAbandoned = true
                return ($0.bodyStarted, $0.received)
            }
        }

        var isAbandoned: Bool { self.state.withLock { $0.isAbandoned } }

        var snapshot: (lastByteAt: RelayClock.Instant, received: Int, bodyStarted: Bool) {
            self.state.withLock { ($0.lastByteAt, $0.received, $0.bodyStarted) }
        }
    }

    nonisolated(nonsending) private func consume(
        _ response: inout SegmentReply,
        seq: Int,
        skipping skip: Int,
        progress: Progress,
        _ handle: nonisolated(nonsending) @escaping @Sendable (TrickleSubscriberEvent) async throws -> Void
    ) async throws -> BodyEnd? {
        let limit = self.configuration.maximumSegmentBytes
        var received = 0
        var delivered = skip
        // Once the stall watchdog abandoned the segment, no event of it may follow (it reports the end itself).
        guard progress.startBody() else { return nil }
        if skip == 0 { try await handle(.segmentStarted(seq: seq)) }
        do {
            while var chunk = try await response.next() {
                received += chunk.readableBytes
                guard progress.note(bytes: chunk.readableBytes) else { return nil }
                // After a resumed GET, the server replays from byte 0: drop what was handed over.
                if received <= skip { continue }
                if received - chunk.readableBytes < skip {
                    chunk.moveReaderIndex(forwardBy: skip - (received - chunk.readableBytes))
                }
                if delivered + chunk.readableBytes > limit {
                    let room = limit - delivered
                    if room > 0, let head = chunk.readSlice(length: room) {
                        delivered += room
                        self.statsBox.withLock { $0.bytes += room }
                        try await Self.handing(.bytes(head, seq: seq), to: handle)
                    }
                    self.statsBox.withLock {
                        $0.overLimitSegments += 1
                        $0.segments += 1
                    }
                    return .ended(.overLimit(bytes: received))
                }
                delivered += chunk.readableBytes
                self.statsBox.withLock { $0.bytes += chunk.readableBytes }
                try await Self.handing(.bytes(chunk, seq: seq), to: handle)
            }
        } catch let error as CancellationError {
            throw error
        } catch let error as TrickleClientError {
            throw error
        } catch let failure as HandlerFailure {
            throw failure
        } catch {
            if Task.isCancelled { throw CancellationError() }
            return .interrupted(delivered: delivered)
        }
        self.statsBox.withLock { $0.segments += 1 }
        return .ended(.complete(bytes: delivered))
    }

    /// Returns an outcome when nothing arrived for the stall timeout and the publisher moved on past `seq`
    /// (nextWrite > seq + 1); `nil` to keep waiting. A quiet segment at the live edge is normal and is never
    /// abandoned (§10.5).
    private func checkForStall(seq: Int, progress: Progress) async -> Attempt? {
        let snapshot = progress.snapshot
        guard self.clock.now - snapshot.lastByteAt >= self.configuration.stallTimeout else { return nil }
        let nextWrite = await self.fetchNextWrite()
        if nextWrite == .notFound {
            // The channel is gone while we waited (and our GET was never released): end of stream.
            return .notFound
        }
        if case .value(let nextWrite) = nextWrite, nextWrite > seq + 1,
            let state = progress.abandon(ifIdleSince: snapshot.lastByteAt)
        {
            self.logger.debug(
                "trickle segment stalled, abandoning",
                metadata: ["trickle.seq": "\(seq)", "trickle.latest": "\(nextWrite)"]
            )
            self.statsBox.withLock {
                $0.stalls += 1
                if state.bodyStarted { $0.segments += 1 }
            }
            return state.bodyStarted ? .segment(seq: seq, .ended(.stalled(bytes: state.received))) : .abandonedBeforeStart
        }
        progress.touch()
        return nil
    }

    private func fetchNextWrite() async -> ChannelNextWrite {
        await ChannelNextWrite.fetch(self.url, httpClient: self.httpClient, logger: self.logger)
    }
}
