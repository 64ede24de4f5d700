import Logging
import NIOCore
import HTTPTypes
import NIOHTTP1
import TrickleRelaySupport

/// Serves the trickle protocol on one HTTP/1 connection of the embedded server, on the connection's event loop.
///
/// Segment bodies are appended to their segment as NIO reads them, and waiting readers are written to when the
/// segment changes — no task, actor hop or continuation per chunk (the SDK's writer sends one chunk per line, so
/// that would be the cost of a line). A reader woken once writes every chunk that arrived since, in one write.
/// The decisions (routing, status codes, headers) are ``TrickleRequestRouter``'s.
final class TrickleConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Sent through every connection's pipeline when the server shuts down: idle connections close now, busy
    /// ones once their response is written.
    struct ShutdownEvent: Sendable {}

    /// How a segment POST's body ended.
    private enum UploadOutcome {
        case completed(bytes: Int)
        case tooLarge(bytes: Int)
        case overCapacity
        /// The segment ended before its body did: reset, evicted, deleted, or the channel closed (§6).
        case released
        /// The connection broke part-way.
        case vanished
        /// A re-send of an interrupted segment that does not repeat what the segment holds (it differs, or it ended
        /// before it got there): refused, and the segment waits for a re-send that does.
        case resendRefused(String)
    }

    /// A segment POST in progress (a class: the per-chunk path mutates it in place, without copying it out and back).
    private final class Upload {
        let channel: ServerChannel
        let segment: ServerSegment
        let name: String
        /// Bytes the segment already held from an earlier POST of the seq: the re-send repeats them (checked, skipped).
        let alreadyHeld: Int
        /// This POST's writer token on the segment (another POST of the seq cuts it off).
        let writer: Int
        var skipped = 0
        /// Where the check of the repeated bytes stands in the segment.
        var resendCursor = ServerSegment.ResendCursor()
        var total = 0
        var closeObserver: Int?
        var interimTimer: RepeatedTask?
        /// Chunks read while the server's ingest is paused, in order.
        var heldChunks: [ByteBuffer] = []
        var isPaused = false
        var bodyEnded = false

        init(channel: ServerChannel, segment: ServerSegment, name: String) {
            self.channel = channel
            self.segment = segment
            self.name = name
            (self.writer, self.alreadyHeld) = segment.attachWriter()
        }
    }

    /// A segment GET in progress.
    private final class Read {
        let channel: ServerChannel
        let segment: ServerSegment
        let latestAtAccept: Int
        var nextChunk = 0
        var headWritten = false
        var changeObserver: Int?
        var waitingForWritability = false

        init(channel: ServerChannel, segment: ServerSegment, latestAtAccept: Int) {
            self.channel = channel
            self.segment = segment
            self.latestAtAccept = latestAtAccept
        }
    }

    private let router: TrickleRequestRouter
    private let ingestGate: PauseGate
    private let logger: Logger
    private var context: ChannelHandlerContext?

    /// Counts requests on this connection: callbacks from other threads carry the one they were made for and are
    /// dropped when it has passed.
    private var generation = 0
    private var version: HTTPVersion = .http1_1
    private var isHead = false
    private var keepAlive = true
    private var closeAfterResponse = false
    private var isShuttingDown = false
    /// The connection closes once its last response is written: nothing more is answered.
    private var isClosing = false
    /// Closes the connection when no request head arrives in time.
    private var headDeadline: Scheduled<Void>?
    /// A `read()` held back while the ingest gate is paused.
    private var readHeld = false
    private var upload: Upload?
    private var segmentRead: Read?
    /// Request parts that arrived while a response was still being streamed.
    private var pipelined: [HTTPServerRequestPart] = []
    private var pipelinedBytes = 0

    init(router: TrickleRequestRouter, ingestGate: PauseGate, logger: Logger) {
        self.router = router
        self.ingestGate = ingestGate
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.awaitHead()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.endActivity()
        self.headDeadline?.cancel()
        self.headDeadline = nil
        self.context = nil
    }

    /// Arms the deadline for the next request head (the connection is idle between requests).
    private func awaitHead() {
        guard let context = self.context else { return }
        self.headDeadline?.cancel()
        let fire = self.callback(.headDeadline)
        self.headDeadline = context.eventLoop.scheduleTask(in: TimeAmount(self.router.configuration.requestHeadTimeout)) { fire() }
    }

    private func headDeadlinePassed() {
        guard self.headDeadline != nil, self.upload == nil, self.segmentRead == nil else { return }
        self.headDeadline = nil
        self.logger.debug("trickle connection closed: no request head within the timeout")
        self.context?.close(promise: nil)
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = Self.unwrapInboundIn(data)
        if self.segmentRead != nil || !self.pipelined.isEmpty {
            // A pipelined request (HTTP/1.1 lets a client send the next one before this response ends): it is
            // answered after. Reading goes on meanwhile — a reader that hangs up must be noticed — so what is
            // held is bounded.
            self.pipelined.append(part)
            if case .body(let chunk) = part { self.pipelinedBytes += chunk.readableBytes }
            if self.pipelined.count > Self.maximumPipelinedParts || self.pipelinedBytes > Self.maximumPipelinedBytes {
                self.logger.debug("trickle connection closed: too much pipelined behind a streaming response")
                context.close(promise: nil)
            }
            return
        }
        self.handle(part, context: context)
    }

    /// Bounds on what a connection may send ahead of a response still being streamed.
    private static let maximumPipelinedParts = 64
    private static let maximumPipelinedBytes = 1024 * 1024

    /// Answers the requests that were pipelined behind a response that has now ended.
    private func handlePipelined() {
        guard let context = self.context else { return }
        while self.segmentRead == nil, !self.pipelined.isEmpty, !self.isClosing {
            let part = self.pipelined.removeFirst()
            if case .body(let chunk) = part { self.pipelinedBytes -= chunk.readableBytes }
            self.handle(part, context: context)
        }
    }

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        guard !self.isClosing else { return }
        switch part {
        case .head(let head):
            self.startRequest(head, context: context)
        case .body(let chunk):
            guard self.upload != nil else { return }  // a body nobody asked for: read past it
            self.receive(chunk)
        case .end:
            guard let upload = self.upload else { return }
            upload.bodyEnded = true
            if !upload.isPaused { self.finishUpload(.completed(bytes: upload.total)) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.endActivity()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A broken connection or a malformed request (NIO's error handler has answered 400 where it could).
        self.logger.debug("trickle connection error", metadata: ["error": "\(error)"])
        self.endActivity()
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let read = self.segmentRead, read.waitingForWritability {
            self.segmentRead?.waitingForWritability = false
            self.pumpRead()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ShutdownEvent {
            self.isShuttingDown = true
            if self.upload == nil && self.segmentRead == nil {
                context.close(promise: nil)
            } else {
                self.closeAfterResponse = true
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if self.upload?.isPaused == true {
            self.readHeld = true
            return
        }
        context.read()
    }

    // MARK: Requests

    private func startRequest(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        self.headDeadline?.cancel()
        self.headDeadline = nil
        self.generation &+= 1
        self.version = head.version
        self.isHead = head.method == .HEAD
        self.keepAlive = head.isKeepAlive
        self.closeAfterResponse = self.isShuttingDown
        switch self.router.action(for: head) {
        case .respond(let response):
            self.write(response)
        case .upload(let channel, let segment, let name):
            self.startUpload(channel: channel, segment: segment, name: name, head: head, context: context)
        case .read(let channel, let segment, let latestAtAccept):
            channel.readerStarted()
            // A response of unknown length to an HTTP/1.0 client ends when the connection does.
            if head.version.minor == 0 && head.version.major == 1 { self.closeAfterResponse = true }
            self.segmentRead = Read(channel: channel, segment: segment, latestAtAccept: latestAtAccept)
            self.pumpRead()
        }
    }

    /// Writes a whole response; closes the connection after it when it or the request asks.
    private func write(_ response: ServerResponse) {
        guard let context = self.context else { return }
        let close = response.closeConnection || self.closeAfterResponse || !self.keepAlive
        var response = response
        response.closeConnection = close
        context.write(Self.wrapOutboundOut(.head(response.head(version: self.version))), promise: nil)
        // A reply to HEAD has the headers of the reply to GET and no body (RFC 9110 §9.3.2): one would be read as
        // the start of the next response.
        if !response.body.isEmpty, !self.isHead {
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: response.body)))), promise: nil)
        }
        self.writeEnd(close: close, context: context)
    }

    private func writeEnd(close: Bool, context: ChannelHandlerContext) {
        if close {
            self.isClosing = true
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
                channel.close(promise: nil)
            }
        } else {
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
            self.awaitHead()
        }
    }

    /// What another thread tells the connection.
    private enum Wake: Sendable {
        case headDeadline
        case segmentEndedUnderUpload
        case interimTick
        case ingestResumed
        case segmentChangedUnderRead
    }

    /// A callback for another thread that delivers `wake` on this connection's event loop, if the request it was
    /// made for is still the current one.
    private func callback(_ wake: Wake) -> @Sendable () -> Void {
        guard let context = self.context else { return {} }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let generation = self.generation
        return { [eventLoop = context.eventLoop] in
            eventLoop.execute {
                let handler = handler.value
                guard handler.generation == generation else { return }
                switch wake {
                case .headDeadline: handler.headDeadlinePassed()
                case .segmentEndedUnderUpload: handler.segmentEndedUnderUpload()
                case .interimTick: handler.interimTick()
                case .ingestResumed: handler.resumeIngest()
                case .segmentChangedUnderRead: handler.segmentChangedUnderRead()
                }
            }
        }
    }

    /// Ends what the connection was doing when it goes away: a body cut short leaves its segment open for a
    /// re-send; a reader stops observing its segment.
    private func endActivity() {
        if self.upload != nil { self.finishUpload(.vanished) }
        self.finishRead()
    }

    // MARK: Segment POST

    private func startUpload(channel: ServerChannel, segment: ServerSegment, name: String, head: HTTPRequestHead, context: ChannelHandlerContext) {
        channel.writerStarted()
        if head.headers.first(name: "Expect")?.lowercased() == "100-continue" {
            // curl (and other clients) ask before sending a body over 1 MiB, and without an answer wait a second
            // per request before sending anyway.
            context.writeAndFlush(Self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
        // A re-send of a segment whose POST broke part-way: its first bytes repeat what the segment holds.
        let upload = Upload(channel: channel, segment: segment, name: name)
        self.upload = upload
        guard let observer = segment.observeClose(self.callback(.segmentEndedUnderUpload)) else {
            self.finishUpload(.released)
            return
        }
        upload.closeObserver = observer
        if segment.snapshot.byteCount == 0 {
            // Idle preconnected POST: an interim 100 every interval keeps intermediaries patient (§6).
            let interval = TimeAmount(self.router.configuration.interimResponseInterval)
            let tick = self.callback(.interimTick)
            upload.interimTimer = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in tick() }
        }
    }

    private func interimTick() {
        guard let upload = self.upload, let context = self.context else { return }
        let snapshot = upload.segment.snapshot
        guard snapshot.byteCount == 0, !snapshot.isClosed else {
            upload.interimTimer?.cancel()
            self.upload?.interimTimer = nil
            return
        }
        context.writeAndFlush(Self.wrapOutboundOut(.head(HTTPResponseHead(version: self.version, status: .continue))), promise: nil)
    }

    private func segmentEndedUnderUpload() {
        guard let upload = self.upload else { return }
        upload.closeObserver = nil
        if upload.segment.isWriter(upload.writer) || upload.segment.snapshot.isChannelClosed {
            self.finishUpload(.released)
        } else {
            // Another POST of the seq took the segment over and ended it: nothing of this body was taken.
            self.finishUpload(.resendRefused("another POST of segment \(upload.segment.seq) took it over"))
        }
    }

    private func receive(_ chunk: ByteBuffer) {
        guard let upload = self.upload else { return }
        if upload.isPaused || !self.ingestGate.isOpen(orObserve: self.callback(.ingestResumed)) {
            upload.isPaused = true
            upload.heldChunks.append(chunk)
            return
        }
        self.append(chunk)
    }

    private func resumeIngest() {
        guard let upload = self.upload, upload.isPaused else { return }
        // The gate may have been paused again meanwhile: then wait for the next resume.
        guard self.ingestGate.isOpen(orObserve: self.callback(.ingestResumed)) else { return }
        upload.isPaused = false
        let held = upload.heldChunks
        upload.heldChunks = []
        for chunk in held {
            guard self.upload != nil else { return }
            self.append(chunk)
        }
        guard let upload = self.upload else { return }
        if upload.bodyEnded {
            self.finishUpload(.completed(bytes: upload.total))
        } else if self.readHeld, let context = self.context {
            self.readHeld = false
            context.read()
        }
    }

    /// Appends one body chunk to the upload's segment, ending the upload when the segment refuses it.
    private func append(_ chunk: ByteBuffer) {
        guard let upload = self.upload else { return }
        var chunk = chunk
        guard chunk.readableBytes > 0 else { return }
        if upload.skipped < upload.alreadyHeld {
            // The bytes the segment already holds from the vanished writer: not appended twice — and checked, so
            // what is taken as a repeat is one.
            let skip = min(upload.alreadyHeld - upload.skipped, chunk.readableBytes)
            if let difference = upload.segment.firstDifference(chunk.getSlice(at: chunk.readerIndex, length: skip)!, at: upload.skipped, cursor: &upload.resendCursor) {
                self.finishUpload(
                    .resendRefused("the re-sent body differs at byte \(difference) from the \(upload.alreadyHeld) bytes segment \(upload.segment.seq) already holds")
                )
                return
            }
            chunk.moveReaderIndex(forwardBy: skip)
            upload.skipped += skip
            upload.total += skip
            if chunk.readableBytes == 0 {
                return
            }
        }
        if upload.total == 0 {
            upload.channel.noteSegmentStarted(seq: upload.segment.seq, now: self.router.registry.clock.now)
            self.router.registry.accounting.noteSegmentStarted()
            upload.interimTimer?.cancel()
            upload.interimTimer = nil
        }
        // Bounded: the check below ends the body once past the segment limit.
        upload.total += chunk.readableBytes
        if upload.total > self.router.configuration.maximumSegmentBytes {
            self.finishUpload(.tooLarge(bytes: upload.total))
            upload.segment.close()
            return
        }
        switch upload.segment.append(chunk, writer: upload.writer) {
        case .appended:
            break
        case .cutOff:
            self.finishUpload(.resendRefused("another POST of segment \(upload.segment.seq) took it over"))
        case .closed:
            self.finishUpload(.released)
        case .overCapacity:
            self.finishUpload(.overCapacity)
            upload.segment.close()
        }
    }

    private func finishUpload(_ outcome: UploadOutcome) {
        guard let upload = self.upload else { return }
        self.upload = nil
        upload.interimTimer?.cancel()
        if let observer = upload.closeObserver { upload.segment.removeObserver(observer) }
        upload.channel.writerEnded()
        if self.readHeld, let context = self.context {
            self.readHeld = false
            context.read()
        }
        let segment = upload.segment
        var headers: HTTPHeaders = [TrickleHeaders.seq.rawName: "\(segment.seq)"]
        let configuration = self.router.configuration
        let accounting = self.router.registry.accounting
        var outcome = outcome
        if case .completed = outcome, upload.skipped < upload.alreadyHeld {
            outcome = .resendRefused("the re-sent body ended before repeating the \(upload.alreadyHeld) bytes segment \(segment.seq) already holds")
        }
        switch outcome {
        case .completed(let bytes):
            if bytes == 0, segment.isWriter(upload.writer) { upload.channel.noteEmptySegment(seq: segment.seq) }
            guard segment.closeByWriter(upload.writer) else {
                // Cut off by a later POST of the seq (a re-send): this body's end is not the segment's.
                self.write(.text(409, "another POST of segment \(segment.seq) took it over", headers: headers, closeConnection: true))
                return
            }
            if segment.snapshot.isChannelClosed { headers.add(name: TrickleHeaders.closed.rawName, value: TrickleHeaders.closedValue) }
            self.write(.text(200, "", headers: headers))
        case .tooLarge(let bytes):
            accounting.count(.segmentTooLarge)
            self.logger.info(
                "trickle segment over the byte limit",
                metadata: ["trickle.channel": "\(upload.name)", "trickle.seq": "\(segment.seq)", "trickle.bytes": "\(bytes)"]
            )
            self.write(.text(413, "segment exceeds \(configuration.maximumSegmentBytes) bytes", headers: headers, closeConnection: true))
        case .overCapacity:
            accounting.count(.retainedBytesLimit)
            self.logger.warning(
                "trickle server retained-bytes limit reached; segment refused",
                metadata: ["trickle.channel": "\(upload.name)", "trickle.seq": "\(segment.seq)", "trickle.limit": "\(accounting.maximumRetainedBytes)"]
            )
            headers.add(name: "Retry-After", value: "5")
            self.write(
                .text(
                    503,
                    "the server holds its maximum of \(accounting.maximumRetainedBytes) segment bytes; retry later",
                    headers: headers,
                    closeConnection: true
                )
            )
        case .released:
            if segment.snapshot.isChannelClosed { headers.add(name: TrickleHeaders.closed.rawName, value: TrickleHeaders.closedValue) }
            self.write(.text(200, "", headers: headers, closeConnection: true))
        case .resendRefused(let reason):
            // The segment stays as the interrupted writer left it, open for a re-send that repeats it.
            segment.markWriterVanished(token: upload.writer, at: self.router.registry.clock.now)
            self.logger.info("trickle re-send refused", metadata: ["trickle.channel": "\(upload.name)", "trickle.seq": "\(segment.seq)", "reason": "\(reason)"])
            self.write(.text(409, reason, headers: headers, closeConnection: true))
        case .vanished:
            // go-livepeer leaves the segment open with no way forward, so its readers hang (§4, §10.5). Ours stays
            // open for the writer's re-send of the same seq, which continues it where it broke (readers see no gap
            // and no repeat); it ends when a later segment starts or after `interruptedSegmentTimeout` without one.
            segment.markWriterVanished(token: upload.writer, at: self.router.registry.clock.now)
            self.context?.close(promise: nil)
        }
    }

    // MARK: Segment GET

    /// Writes what the segment holds past the reader's position, then waits (observing the segment, or the
    /// connection's writability) for more; ends the response when the segment ends.
    private func pumpRead() {
        guard let context = self.context, context.channel.isActive else { return }
        while let read = self.segmentRead {
            guard context.channel.isWritable else {
                read.waitingForWritability = true
                return
            }
            let result: ServerSegment.ReadResult
            let next = read.segment.read(
                fromChunk: read.nextChunk,
                maximumBytes: Self.batchLimit,
                orObserve: self.callback(.segmentChangedUnderRead)
            )
            switch next {
            case .observing(let id):
                read.changeObserver = id
                return
            case .available(let available):
                result = available
            }
            if !read.headWritten {
                // Headers wait for the first byte (or the end), so a channel closed while we wait can still be
                // announced with `Lp-Trickle-Closed` on a 200 (§4).
                if result.chunks.isEmpty && result.isChannelClosed {
                    self.finishRead()
                    self.write(.channelClosed())
                    self.handlePipelined()
                    return
                }
                var headers: HTTPHeaders = [TrickleHeaders.seq.rawName: "\(read.segment.seq)"]
                if read.segment.seq != read.latestAtAccept { headers.add(name: TrickleHeaders.latest.rawName, value: "\(read.latestAtAccept)") }
                if !read.channel.mimeType.isEmpty { headers.add(name: "Content-Type", value: read.channel.mimeType) }
                if result.chunks.isEmpty && result.isClosed {
                    // An empty segment (deleted, reset, or an empty POST): go-livepeer answers 200 with no body, and
                    // with Lp-Trickle-Latest (the SDK reads it to move on).
                    headers.replaceOrAdd(name: TrickleHeaders.latest.rawName, value: "\(read.channel.nextWrite)")
                    self.finishRead()
                    self.write(ServerResponse(status: 200, headers: headers, body: "", closeConnection: false))
                    self.handlePipelined()
                    return
                }
                context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: self.version, status: .ok, headers: headers))), promise: nil)
                read.headWritten = true
            }
            self.writeChunks(result.chunks, context: context)
            read.nextChunk += result.chunks.count
            if result.isClosed {
                self.finishRead()
                self.writeEnd(close: self.closeAfterResponse || !self.keepAlive, context: context)
                self.handlePipelined()
                return
            }
            context.flush()
        }
    }

    /// Small chunks (the SDK's lines) go out gathered into one buffer per batch: one body part, one chunk-size
    /// line and one `writev` for the batch instead of one per line.
    private func writeChunks(_ chunks: [ByteBuffer], context: ChannelHandlerContext) {
        guard chunks.count > 1 else {
            if let chunk = chunks.first { context.write(Self.wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil) }
            return
        }
        var gathered: ByteBuffer?
        for chunk in chunks {
            if chunk.readableBytes >= Self.gatherLimit {
                if let buffer = gathered {
                    context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
                    gathered = nil
                }
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
                continue
            }
            if gathered == nil { gathered = context.channel.allocator.buffer(capacity: Self.gatherLimit) }
            var chunk = chunk
            gathered!.writeBuffer(&chunk)
            if gathered!.readableBytes >= Self.gatherLimit {
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(gathered!))), promise: nil)
                gathered = nil
            }
        }
        if let buffer = gathered { context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
    }

    /// Chunks below this size are gathered before they are written.
    private static let gatherLimit = 16 * 1024
    /// At most this much is written before the connection's writability is checked again: a reader of a long
    /// segment that reads slowly holds about this much in its outbound buffer, not the whole segment.
    private static let batchLimit = 256 * 1024

    private func segmentChangedUnderRead() {
        guard self.segmentRead != nil else { return }
        self.segmentRead?.changeObserver = nil
        self.pumpRead()
    }

    private func finishRead() {
        guard let read = self.segmentRead else { return }
        self.segmentRead = nil
        if let observer = read.changeObserver { read.segment.removeObserver(observer) }
        read.channel.readerEnded()
    }
}
