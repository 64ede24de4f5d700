import Logging
import HTTPTypes
import NIOHTTP1
import TrickleRelaySupport

/// Decides what the embedded server does with a request head (`trickle-protocol.md` §2–§7): answer at once, take
/// a segment body, or stream a segment. It never waits; ``TrickleConnectionHandler`` carries the decision out.
struct TrickleRequestRouter: Sendable {
    /// What to do with a request.
    enum Action {
        /// Answer with this response (and read past any body).
        case respond(ServerResponse)
        /// Take the request body into `segment` (a segment POST).
        case upload(channel: ServerChannel, segment: ServerSegment, name: String)
        /// Stream `segment` from byte 0 as it grows (a segment GET).
        case read(channel: ServerChannel, segment: ServerSegment, latestAtAccept: Int)
    }

    let registry: ChannelRegistry
    let configuration: TrickleServer.Configuration
    let basePath: String
    let logger: Logger
    let metrics: @Sendable () -> String

    private var accounting: ServerAccounting { self.registry.accounting }

    func action(for head: HTTPRequestHead) -> Action {
        let path = head.uri
        let method = head.method
        // The process's own endpoints. GET on a channel path means nothing in the protocol (§2), so these two
        // cannot shadow a channel of the same name.
        if method == .GET, let endpoint = Self.ownEndpoint(path) {
            if endpoint == "/metrics", !self.isAuthorized(head) {
                self.accounting.count(.unauthorized)
                return .respond(self.unauthorized(closeConnection: false))
            }
            let isHealth = endpoint == "/healthz"
            return .respond(
                ServerResponse(
                    status: 200,
                    headers: ["Content-Type": isHealth ? "text/plain; charset=utf-8" : "text/plain; version=0.0.4"],
                    body: isHealth ? "ok" : self.metrics(),
                    closeConnection: false
                )
            )
        }
        // A POST refused before its body is read closes the connection: the body is not drained.
        let isPost = method == .POST
        // The channel announcements name every channel (names that may be capabilities): with a token, reading
        // them needs it even where segment reads are open.
        if self.configuration.token != nil, method != .GET || self.configuration.tokenRequiredForReads || self.isChangeFeed(path),
            !self.isAuthorized(head)
        {
            self.accounting.count(.unauthorized)
            return .respond(self.unauthorized(closeConnection: isPost))
        }
        switch TrickleRoute(path: path, basePath: self.basePath) {
        case .invalid(let status, let reason):
            self.accounting.count(status == 400 ? .badRequest : .notFound)
            return .respond(.text(status, reason, closeConnection: isPost))
        case .channel(let name):
            return .respond(self.channelRequest(head, name: name))
        case .next(let name):
            return .respond(self.nextRequest(method: method, name: name))
        case .segment(let name, let seq):
            switch method {
            case .POST: return self.segmentPost(head, name: name, seq: seq)
            case .GET: return self.segmentGet(name: name, seq: seq)
            case .DELETE: return .respond(self.segmentDelete(name: name, seq: seq))
            default: return .respond(.text(405, "use GET, POST or DELETE on a segment", closeConnection: isPost))
            }
        }
    }

    // MARK: Channel create / delete, /next, segment DELETE

    private func channelRequest(_ head: HTTPRequestHead, name: String) -> ServerResponse {
        switch head.method {
        case .POST:
            guard self.configuration.autocreate else {
                // Orchestrators run with auto-create off: channels exist only because they were made (§2).
                return .text(404, "channel creation is disabled on this server")
            }
            let mime = head.headers.first(name: TrickleHeaders.expectContent.rawName) ?? ""
            guard let (_, created) = self.registry.channel(named: name, creatingWith: mime) else {
                return self.channelLimit(closeConnection: false)
            }
            if created { self.logger.debug("trickle channel created", metadata: ["trickle.channel": "\(name)"]) }
            return .text(200, "")
        case .DELETE:
            guard self.registry.remove(named: name) else { return .text(400, "Invalid stream") }
            self.logger.debug("trickle channel deleted", metadata: ["trickle.channel": "\(name)"])
            return .text(200, "")
        default:
            return .text(405, "use POST or DELETE on a channel")
        }
    }

    private func nextRequest(method: HTTPMethod, name: String) -> ServerResponse {
        guard method == .GET else { return .text(405, "use GET on /next", closeConnection: method == .POST) }
        guard let channel = self.registry.channel(named: name) else { return .text(404, "Stream not found") }
        let latest = channel.nextWrite
        return .text(200, "\(latest)", headers: [TrickleHeaders.latest.rawName: "\(latest)"])
    }

    private func segmentDelete(name: String, seq: Int) -> ServerResponse {
        guard let channel = self.registry.channel(named: name) else { return .text(404, "Stream not found") }
        guard channel.closeSegment(seq: seq) else { return .text(400, "Nonexistent segment") }
        return .text(200, "")
    }

    // MARK: Segment GET and POST

    private func segmentGet(name: String, seq: Int) -> Action {
        guard let channel = self.registry.channelForReading(named: name) else {
            return .respond(.text(404, "Stream not found"))
        }
        switch channel.resolveRead(seq: seq) {
        case .closed:
            return .respond(.channelClosed())
        case .notRetained(let resolved, let latest):
            let headers: HTTPHeaders = [TrickleHeaders.latest.rawName: "\(latest)", TrickleHeaders.seq.rawName: "\(resolved)"]
            return .respond(.text(TrickleHeaders.notRetainedStatus, "Entry not found", headers: headers))
        case .segment(let segment, let latestAtAccept):
            return .read(channel: channel, segment: segment, latestAtAccept: latestAtAccept)
        }
    }

    private func segmentPost(_ head: HTTPRequestHead, name: String, seq: Int) -> Action {
        guard seq >= -1 else { return .respond(.text(400, "POST seq must be ≥ -1", closeConnection: true)) }
        let channel: ServerChannel
        if let existing = self.registry.channel(named: name) {
            channel = existing
        } else if self.configuration.autocreate {
            // A stale publisher's POST (seq > 0, e.g. a preconnect still in flight) must not resurrect a channel
            // deleted moments ago: it hears that the channel is closed. A new stream starts at 0 (or -1).
            if seq > 0, self.registry.channelForReading(named: name) != nil {
                return .respond(.channelClosed(closeConnection: true))
            }
            let mime = head.headers.first(name: "Content-Type") ?? ""
            guard let created = self.registry.channel(named: name, creatingWith: mime) else {
                return .respond(self.channelLimit(closeConnection: true))
            }
            channel = created.channel
        } else {
            return .respond(.text(404, "Stream not found", closeConnection: true))
        }
        let reset = !(head.headers.first(name: TrickleHeaders.reset.rawName) ?? "").isEmpty
        switch channel.resolveWrite(seq: seq, reset: reset) {
        case .closed:
            return .respond(.channelClosed(closeConnection: true))
        case .seqsExhausted:
            return .respond(.text(400, "POST -1: the channel has used every seq up to 2^53-1; start a new channel", closeConnection: true))
        case .alreadyComplete(let resolved):
            return .respond(.text(200, "", headers: [TrickleHeaders.seq.rawName: "\(resolved)"], closeConnection: true))
        case .endedInterrupted(let resolved):
            // Not a 200: the publisher must not count the events of this body as delivered (its readers saw the
            // segment end where the broken upload left it).
            self.logger.info("trickle re-send refused: its segment already ended cut short", metadata: ["trickle.channel": "\(name)", "trickle.seq": "\(resolved)"])
            return .respond(
                .text(
                    409,
                    "segment \(resolved) was ended cut short before this re-send arrived (a later segment started, or it waited too long); its remaining bytes were not taken",
                    headers: [TrickleHeaders.seq.rawName: "\(resolved)"],
                    closeConnection: true
                )
            )
        case .segment(let segment):
            return .upload(channel: channel, segment: segment, name: name)
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
    /// Whether `path` names the change feed's channel (the channel, its `/next` or a segment).
    private func isChangeFeed(_ path: String) -> Bool {
        guard self.registry.changeFeed != nil else { return false }
        switch TrickleRoute(path: path, basePath: self.basePath) {
        case .channel(let name), .next(let name), .segment(let name, _): return name == ChannelChangeFeed.channelName
        default: return false
        }
    }

    private func isAuthorized(_ head: HTTPRequestHead) -> Bool {
        guard let token = self.configuration.token else { return true }
        if let header = head.headers.first(name: "Authorization"), let presented = BearerToken.credentials(inAuthorization: header) {
            return token.matches(presented)
        }
        let path = head.uri
        guard let mark = path.firstIndex(of: "?") else { return false }
        for parameter in path[path.index(after: mark)...].split(separator: "&") {
            guard let equals = parameter.firstIndex(of: "=") else { continue }
            let name = parameter[..<equals]
            if name == "token" || name == "jwt", token.matches(parameter[parameter.index(after: equals)...]) { return true }
        }
        return false
    }

    private func unauthorized(closeConnection: Bool) -> ServerResponse {
        .text(
            401,
            "missing or wrong token: send Authorization: Bearer <token> or ?token=<token>",
            headers: ["WWW-Authenticate": "Bearer"],
            closeConnection: closeConnection
        )
    }

    private func channelLimit(closeConnection: Bool) -> ServerResponse {
        self.accounting.count(.channelLimit)
        self.logger.warning("trickle server channel limit reached; channel refused", metadata: ["trickle.limit": "\(self.configuration.maximumChannels)"])
        return .text(
            503,
            "the server holds its maximum of \(self.configuration.maximumChannels) channels; retry later",
            headers: ["Retry-After": "5"],
            closeConnection: closeConnection
        )
    }
}
