import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import TrickleRelaySupport

/// The keep-alive HTTP/1.1 connection one subscriber reads a plain-`http` channel's segments over: one GET at a
/// time, its reply handed to the reader as it is decoded (``SegmentExchange``).
///
/// Why not the shared HTTP client: a follower at the live edge receives one small chunk per line, and through
/// a general client each chunk passes a connection and a request state machine, a back-pressured async sequence
/// and two task resumptions; here it is one lock and one resumption. `https` channels keep the HTTP client (TLS,
/// trust roots, its proxies), where that cost is small beside the cipher's.
final class SegmentConnection: Sendable {
    private let host: String
    private let port: Int
    /// `Host` header value: the URL's authority.
    private let authority: String
    /// Characters of a request URL before its target (`http://authority`).
    private let originLength: Int
    private let group: any EventLoopGroup
    private let connectTimeout: TimeAmount
    private let idle = Mutex<(any Channel)?>(nil)

    /// A connection for `url`'s server, or `nil` when the channel is not plain `http` (or its authority does not
    /// parse: the HTTP client then reports the problem).
    init?(url: TrickleChannelURL, group: any EventLoopGroup, connectTimeout: Duration = .seconds(5)) {
        guard let origin = HTTPOrigin(url: url.base), !origin.isTLS, url.base.dropFirst(7).contains("/") else { return nil }
        self.host = origin.host
        self.port = origin.port
        self.authority = origin.authority
        self.originLength = 7 + origin.authority.count
        self.group = group
        let (seconds, attoseconds) = connectTimeout.components
        self.connectTimeout = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Sends `GET url` and waits for the reply head. A kept connection that turns out closed is replaced once.
    ///
    /// - Parameter url: A full URL of this connection's server (as ``TrickleChannelURL`` builds them).
    nonisolated(nonsending) func get(_ url: String) async throws -> (SegmentExchange, HTTPResponseHead) {
        var request = HTTPRequestHead(version: .http1_1, method: .GET, uri: String(url.dropFirst(self.originLength)))
        request.headers.add(name: "Host", value: self.authority)
        if let kept = self.idle.withLock({ idle in defer { idle = nil }; return idle }) {
            if kept.isActive {
                do {
                    return try await self.send(request, on: kept)
                } catch is SegmentConnectionClosed {
                    // The server closed the idle connection meanwhile: ask again on a new one.
                    try Task.checkCancellation()
                } catch let error as ChannelError where error == .ioOnClosedChannel || error == .alreadyClosed {
                    try Task.checkCancellation()
                }
            } else {
                kept.close(promise: nil)
            }
        }
        return try await self.send(request, on: try await self.connect())
    }

    /// Hands the connection back after a reply: kept for the next GET when the reply ended cleanly and the server
    /// keeps the connection alive, closed otherwise (a reply abandoned mid-body cannot carry the next GET).
    func finished(_ exchange: SegmentExchange, head: HTTPResponseHead) {
        guard exchange.endedCleanly, exchange.isReusable, head.isKeepAlive, exchange.channel.isActive else {
            exchange.channel.close(promise: nil)
            return
        }
        let previous = self.idle.withLock { idle in
            defer { idle = exchange.channel }
            return idle
        }
        previous?.close(promise: nil)
    }

    /// Closes the kept connection (when the subscriber ends).
    func close() {
        self.idle.withLock { idle in defer { idle = nil }; return idle }?.close(promise: nil)
    }

    nonisolated(nonsending) private func send(_ request: HTTPRequestHead, on channel: any Channel) async throws -> (SegmentExchange, HTTPResponseHead) {
        let exchange = SegmentExchange(channel: channel, request: request)
        do {
            try await channel.writeAndFlush(exchange)
            return (exchange, try await exchange.head())
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    private func connect() async throws -> any Channel {
        try await ClientBootstrap(group: self.group.any())
            .connectTimeout(self.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SegmentConnectionHandler())
                }
            }
            .connect(host: self.host, port: self.port)
            .get()
    }
}
