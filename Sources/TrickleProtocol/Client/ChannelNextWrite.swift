import AsyncHTTPClient
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1

/// What `GET {channel}/next` says: the seq the publisher writes next, or that the channel does not exist.
enum ChannelNextWrite: Equatable {
    case value(Int)
    case notFound
    /// The server has no `/next` (400 or 405: http-trickle's sample server).
    case unsupported
    /// No answer, or one that is not a seq.
    case unknown

    /// Asks `url`'s server (5 s at most, through the shared client's kept-alive connections).
    static func fetch(_ url: TrickleChannelURL, httpClient: HTTPClient, logger: Logger) async -> Self {
        var request = HTTPClientRequest(url: url.url("/next"))
        request.method = .GET
        guard let response = try? await httpClient.execute(request, timeout: .seconds(5), logger: logger),
            let body = try? await response.body.collect(upTo: 1024)
        else { return .unknown }
        if response.status == .notFound { return .notFound }
        if response.status == .badRequest || response.status == .methodNotAllowed { return .unsupported }
        guard response.status == .ok,
            let latest = response.headers.first(name: TrickleHeaders.latest.rawName).flatMap({ TrickleSeq.parseHeader($0) })
                ?? TrickleSeq.parseHeader(String(buffer: body))
        else { return .unknown }
        return .value(latest)
    }
}
