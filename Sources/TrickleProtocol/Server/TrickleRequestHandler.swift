import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore

/// Answers the trickle protocol's requests for one ``TrickleServer`` (`trickle-protocol.md` §2–§7).
struct TrickleRequestHandler: Sendable {
    let registry: ChannelRegistry
    let configuration: TrickleServer.Configuration
    let basePath: String
    let ingestGate: PauseGate
    let logger: Logger
    let metrics: @Sendable () -> String

    private var accounting: ServerAccounting { self.registry.accounting }

    /// How a segment POST's body ended.
    enum BodyOutcome: Sendable {
        case completed(bytes: Int)
        case tooLarge(bytes: Int)
        case overCapacity
        case released
        case failed
    }

    func handle(_ request: Request, writer: consuming ResponseWriter, connection: any Channel) async {
        do {
            let path = request.head.path ?? ""
            // The process's own endpoints. GET on a channel path means nothing in the protocol (§2), so these
            // two cannot shadow a channel of the same name.
            if request.method == .get, let endpoint = Self.ownEndpoint(path) {
                if endpoint == "/metrics", !self.isAuthorized(request) {
                    self.accounting.count(.unauthorized)
                    try await self.respondUnauthorized(writer)
                    return
                }
                let body = endpoint == "/healthz" ? "ok" : self.metrics()
                var fields = HTTPFields()
                fields[.contentType] = endpoint == "/healthz" ? "text/plain; charset=utf-8" : "text/plain; version=0.0.4"
                fields[.contentLength] = "\(body.utf8.count)"
                try await writer.write(response: HTTPResponse(status: .ok, headerFields: fields), body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
                return
            }
            if self.configuration.token != nil, request.method != .get || self.configuration.tokenRequiredForReads, !self.isAuthorized(request) {
                self.accounting.count(.unauthorized)
                try await self.respondUnauthorized(writer, closeConnection: request.method == .post)
                if request.method == .post { connection.close(promise: nil) }
                return
            }
            switch TrickleRoute(path: path, basePath: self.basePath) {
            case .invalid(let status, let reason):
                self.accounting.count(status == 400 ? .badRequest : .notFound)
                try await self.respond(writer, status: status, reason: reason, closeConnection: request.method == .post)
                if request.method == .post { connection.close(promise: nil) }
            case .channel(let name):
                try await self.handleChannel(request, name: name, writer: writer)
            case .next(let name):
                try await self.handleNext(request, name: name, writer: writer)
            case .segment(let name, let seq):
                switch request.method {
                case .post: try await self.handlePost(request, name: name, seq: seq, writer: writer, connection: connection)
                case .get: try await self.handleGet(name: name, seq: seq, writer: writer)
                case .delete: try await self.handleDeleteSegment(name: name, seq: seq, writer: writer)
                default: try await self.respond(writer, status: 405, reason: "use GET, POST or DELETE on a segment")
                }
            }
        } catch {
            // The peer went away mid-response; nothing is left to tell it.
            self.logger.debug("trickle request ended early", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Channel create / delete, /next

    private func handleChannel(_ request: Request, name: String, writer: consuming ResponseWriter) async throws {
        switch request.method {
        case .post:
            guard self.configuration.autocreate else {
                // Orchestrators run with auto-create off: channels exist only because they were made (§2).
                try await self.respond(writer, status: 404, reason: "channel creation is disabled on this server")
                return
            }
            let mime = request.headers[TrickleHeaders.expectContent] ?? ""
            guard let (_, created) = self.registry.channel(named: name, creatingWith: mime, now: .now) else {
                try await self.respondChannelLimit(writer)
                return
            }
            if created { self.logger.debug("trickle channel created", metadata: ["trickle.channel": "\(name)"]) }
            try await self.respond(writer, status: 200, reason: "")
        case .delete:
            guard self.registry.remove(named: name) else {
                try await self.respond(writer, status: 400, reason: "Invalid stream")
                return
            }
            self.logger.debug("trickle channel deleted", metadata: ["trickle.channel": "\(name)"])
            try await self.respond(writer, status: 200, reason: "")
        default:
            try await self.respond(writer, status: 405, reason: "use POST or DELETE on a channel")
        }
    }

    private func handleNext(_ request: Request, name: String, writer: consuming ResponseWriter) async throws {
        guard request.method == .get else {
            try await self.respond(writer, status: 405, reason: "use GET on /next")
            return
        }
        guard let channel = self.registry.channel(named: name) else {
            try await self.respond(writer, status: 404, reason: "Stream not found")
            return
        }
        let latest = channel.nextWrite
        var fields = HTTPFields()
        fields[TrickleHeaders.latest] = "\(latest)"
        try await self.respond(writer, status: 200, reason: "\(latest)", fields: fields)
    }

    private func handleDeleteSegment(name: String, seq: Int, writer: consuming ResponseWriter) async throws {
        guard let channel = self.registry.channel(named: name) else {
            try await self.respond(writer, status: 404, reason: "Stream not found")
            return
        }
        guard channel.closeSegment(seq: seq) else {
            try await self.respond(writer, status: 400, reason: "Nonexistent segment")
            return
        }
        try await self.respond(writer, status: 200, reason: "")
    }

    // MARK: Segment GET

    private func handleGet(name: String, seq: Int, writer: consuming ResponseWriter) async throws {
        guard let channel = self.registry.channelForReading(named: name) else {
            try await self.respond(writer, status: 404, reason: "Stream not found")
            return
        }
        switch channel.resolveRead(seq: seq) {
        case .closed:
            try await self.respondClosed(writer)
        case .notRetained(let resolved, let latest):
            var fields = HTTPFields()
            fields[TrickleHeaders.latest] = "\(latest)"
            fields[TrickleHeaders.seq] = "\(resolved)"
            try await self.respond(writer, status: TrickleHeaders.notRetainedStatus, reason: "Entry not found", fields: fields)
        case .segment(let segment, let latestAtAccept):
            channel.readerStarted()
            defer { channel.readerEnded() }
            // Headers wait for the first byte (or the end), so a channel closed while we wait can still be
            // announced with `Lp-Trickle-Closed` on a 200 (§4).
            var result = await segment.read(fromChunk: 0)
            if result.chunks.isEmpty && result.isChannelClosed {
                try await self.respondClosed(writer)
                return
            }
            var fields = HTTPFields()
            fields[TrickleHeaders.seq] = "\(segment.seq)"
            if segment.seq != latestAtAccept { fields[TrickleHeaders.latest] = "\(latestAtAccept)" }
            if !channel.mimeType.isEmpty { fields[.contentType] = channel.mimeType }
            if result.chunks.isEmpty && result.isClosed {
                // An empty segment (deleted, reset, or an empty POST): go-livepeer answers 200 with no body, and
                // with Lp-Trickle-Latest (the SDK reads it to move on).
                fields[TrickleHeaders.latest] = "\(channel.nextWrite)"
                fields[.contentLength] = "0"
                try await writer.writeResponse(HTTPResponse(status: .ok, headerFields: fields))
                return
            }
            var bodyWriter = try await writer.writeHead(HTTPResponse(status: .ok, headerFields: fields))
            var nextChunk = 0
            while true {
                try await bodyWriter.write(contentsOf: result.chunks)
                nextChunk += result.chunks.count
                if result.isClosed { break }
                result = await segment.read(fromChunk: nextChunk)
            }
            try await bodyWriter.finish(nil)
        }
    }

    // MARK: Segment POST

    private func handlePost(
        _ request: Request,
        name: String,
        seq: Int,
        writer: consuming ResponseWriter,
        connection: any Channel
    ) async throws {
        guard seq >= -1 else {
            try await self.respond(writer, status: 400, reason: "POST seq must be ≥ -1", closeConnection: true)
            connection.close(promise: nil)
            return
        }
        let channel: ServerChannel
        if let existing = self.registry.channel(named: name) {
            channel = existing
        } else if self.configuration.autocreate {
            // A stale publisher's POST (seq > 0, e.g. a preconnect still in flight) must not resurrect a channel
            // deleted moments ago: it hears that the channel is closed. A new stream starts at 0 (or -1).
            if seq > 0, self.registry.channelForReading(named: name) != nil {
                try await self.respondClosed(writer, closeConnection: true)
                connection.close(promise: nil)
                return
            }
            guard let created = self.registry.channel(named: name, creatingWith: request.headers[.contentType] ?? "", now: .now) else {
                try await self.respondChannelLimit(writer, closeConnection: true)
                connection.close(promise: nil)
                return
            }
            channel = created.channel
        } else {
            try await self.respond(writer, status: 404, reason: "Stream not found", closeConnection: true)
            connection.close(promise: nil)
            return
        }
        let reset = !(request.headers[TrickleHeaders.reset] ?? "").isEmpty
        let segment: ServerSegment
        switch channel.resolveWrite(seq: seq, reset: reset) {
        case .closed:
            try await self.respondClosed(writer, closeConnection: true)
            connection.close(promise: nil)
            return
        case .alreadyComplete(let resolved):
            var fields = HTTPFields()
            fields[TrickleHeaders.seq] = "\(resolved)"
            try await self.respond(writer, status: 200, reason: "", fields: fields, closeConnection: true)
            connection.close(promise: nil)
            return
        case .segment(let resolved):
            segment = resolved
        }

        channel.writerStarted()
        defer { channel.writerEnded() }
        if request.headers[.expect]?.lowercased() == "100-continue" {
            // curl (and other clients) ask before sending a body over 1 MiB, and without an answer wait a second
            // per request before sending anyway.
            try await writer.writeInformationalHead(HTTPResponse(status: .continue))
        }
        // A re-send of a segment whose writer vanished part-way: its first bytes repeat what the segment holds.
        let alreadyHeld = segment.takeOverFromVanishedWriter() ?? 0
        let outcome = OneShotSignal<BodyOutcome>()
        async let reading: Void = self.readBody(request.body, into: segment, of: channel, skipping: alreadyHeld, outcome: outcome)
        while outcome.value == nil {
            let snapshot = segment.snapshot
            if snapshot.isClosed { break }
            if snapshot.byteCount == 0 {
                // Idle preconnected POST: an interim 100 every interval keeps intermediaries patient (§6).
                let changed = await Self.waitForChange(of: segment, after: snapshot.version, timeout: self.configuration.interimResponseInterval)
                if !changed, outcome.value == nil, !segment.snapshot.isClosed {
                    try await writer.writeInformationalHead(HTTPResponse(status: .continue))
                }
            } else {
                // Bytes are flowing: nothing to do until the body ends or someone else ends the segment (reset,
                // eviction, channel closed). Waking on every appended chunk would cost a task wake-up per chunk,
                // and the SDK's writer sends one chunk per line.
                await untilFirst({ _ = await outcome.wait() }, { await segment.waitUntilClosed() })
            }
        }

        var fields = HTTPFields()
        fields[TrickleHeaders.seq] = "\(segment.seq)"
        switch outcome.value {
        case .completed(let bytes):
            await reading
            if bytes == 0 { channel.noteEmptySegment(seq: segment.seq) }
            if segment.snapshot.isChannelClosed { fields[TrickleHeaders.closed] = TrickleHeaders.closedValue }
            try await self.respond(writer, status: 200, reason: "", fields: fields)
        case .tooLarge(let bytes):
            self.accounting.count(.segmentTooLarge)
            self.logger.info(
                "trickle segment over the byte limit",
                metadata: ["trickle.channel": "\(name)", "trickle.seq": "\(segment.seq)", "trickle.bytes": "\(bytes)"]
            )
            try await self.respond(
                writer,
                status: 413,
                reason: "segment exceeds \(self.configuration.maximumSegmentBytes) bytes",
                fields: fields,
                closeConnection: true
            )
            connection.close(promise: nil)
        case .overCapacity:
            self.accounting.count(.retainedBytesLimit)
            self.logger.warning(
                "trickle server retained-bytes limit reached; segment refused",
                metadata: ["trickle.channel": "\(name)", "trickle.seq": "\(segment.seq)", "trickle.limit": "\(self.accounting.maximumRetainedBytes)"]
            )
            fields[.retryAfter] = "5"
            try await self.respond(
                writer,
                status: 503,
                reason: "the server holds its maximum of \(self.accounting.maximumRetainedBytes) segment bytes; retry later",
                fields: fields,
                closeConnection: true
            )
            connection.close(promise: nil)
        case .failed:
            try? await self.respond(writer, status: 500, reason: "segment body read failed", fields: fields, closeConnection: true)
            connection.close(promise: nil)
        case .released, nil:
            // Released before its body ended: segment closed, reset, evicted, or the channel closed (§6).
            if segment.snapshot.isChannelClosed { fields[TrickleHeaders.closed] = TrickleHeaders.closedValue }
            try await self.respond(writer, status: 200, reason: "", fields: fields, closeConnection: true)
            connection.close(promise: nil)
        }
    }

    private func readBody(
        _ body: RequestBody,
        into segment: ServerSegment,
        of channel: ServerChannel,
        skipping alreadyHeld: Int,
        outcome: OneShotSignal<BodyOutcome>
    ) async {
        var total = 0
        var skipped = 0
        do {
            for try await var chunk in body where chunk.readableBytes > 0 {
                await self.ingestGate.pass()
                if skipped < alreadyHeld {
                    // The bytes the segment already holds from the vanished writer: not appended twice.
                    let skip = min(alreadyHeld - skipped, chunk.readableBytes)
                    chunk.moveReaderIndex(forwardBy: skip)
                    skipped += skip
                    total += skip
                    if chunk.readableBytes == 0 { continue }
                }
                if total == 0 {
                    channel.noteSegmentStarted(seq: segment.seq, now: .now)
                    self.accounting.noteSegmentStarted()
                }
                total += chunk.readableBytes  // bounded: the check below ends the body past the segment limit
                if total > self.configuration.maximumSegmentBytes {
                    outcome.fulfill(.tooLarge(bytes: total))
                    segment.close()
                    return
                }
                switch segment.append(chunk) {
                case .appended:
                    break
                case .closed:
                    outcome.fulfill(.released)
                    return
                case .overCapacity:
                    outcome.fulfill(.overCapacity)
                    segment.close()
                    return
                }
            }
            outcome.fulfill(.completed(bytes: total))
        } catch {
            // The writer vanished part-way. go-livepeer leaves the segment open with no way forward, so its readers
            // hang (§4, §10.5). Ours stays open for the writer's re-send of the same seq, which continues it where
            // it broke (readers see no gap and no repeat); it ends when a later segment starts or after
            // `interruptedSegmentTimeout` without a re-send.
            outcome.fulfill(.failed)
            segment.markWriterVanished()
            return
        }
        segment.close()
    }

    private static func waitForChange(of segment: ServerSegment, after version: Int, timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { await segment.waitForChange(after: version) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    // MARK: Authorization and bounds

    /// `/healthz` or `/metrics` (query ignored), else `nil`.
    static func ownEndpoint(_ path: String) -> String? {
        let bare = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? path
        return bare == "/healthz" || bare == "/metrics" ? bare : nil
    }

    /// Whether the request carries the server's token (always `true` without one): `Authorization: Bearer`
    /// with the scheme in any case (RFC 7235 §2.1), or a `token=`/`jwt=` query parameter.
    private func isAuthorized(_ request: Request) -> Bool {
        guard let token = self.configuration.token else { return true }
        if let header = request.headers[.authorization], let presented = BearerToken.credentials(inAuthorization: header) {
            return token.matches(presented)
        }
        guard let path = request.head.path, let mark = path.firstIndex(of: "?") else { return false }
        for parameter in path[path.index(after: mark)...].split(separator: "&") {
            guard let equals = parameter.firstIndex(of: "=") else { continue }
            let name = parameter[..<equals]
            if name == "token" || name == "jwt", token.matches(parameter[parameter.index(after: equals)...]) { return true }
        }
        return false
    }

    private func respondUnauthorized(_ writer: consuming ResponseWriter, closeConnection: Bool = false) async throws {
        var fields = HTTPFields()
        fields[.wwwAuthenticate] = "Bearer"
        try await self.respond(
            writer,
            status: 401,
            reason: "missing or wrong token: send Authorization: Bearer <token> or ?token=<token>",
            fields: fields,
            closeConnection: closeConnection
        )
    }

    private func respondChannelLimit(_ writer: consuming ResponseWriter, closeConnection: Bool = false) async throws {
        self.accounting.count(.channelLimit)
        self.logger.warning("trickle server channel limit reached; channel refused", metadata: ["trickle.limit": "\(self.configuration.maximumChannels)"])
        var fields = HTTPFields()
        fields[.retryAfter] = "5"
        try await self.respond(
            writer,
            status: 503,
            reason: "the server holds its maximum of \(self.configuration.maximumChannels) channels; retry later",
            fields: fields,
            closeConnection: closeConnection
        )
    }

    // MARK: Responses

    private func respondClosed(_ writer: consuming ResponseWriter, closeConnection: Bool = false) async throws {
        var fields = HTTPFields()
        fields[TrickleHeaders.closed] = TrickleHeaders.closedValue
        try await self.respond(writer, status: 200, reason: "", fields: fields, closeConnection: closeConnection)
    }

    private func respond(
        _ writer: consuming ResponseWriter,
        status: Int,
        reason: String,
        fields: HTTPFields = [:],
        closeConnection: Bool = false
    ) async throws {
        var fields = fields
        let body = reason.isEmpty ? "" : reason + "\n"
        fields[.contentLength] = "\(body.utf8.count)"
        if !body.isEmpty { fields[.contentType] = "text/plain; charset=utf-8" }
        if closeConnection { fields[.connection] = "close" }
        let head = HTTPResponse(status: .init(code: status), headerFields: fields)
        if body.isEmpty {
            try await writer.writeResponse(head)
        } else {
            try await writer.write(response: head, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
    }
}
