import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization
import TrickleRelaySupport

/// The keep-alive HTTP/1.1 connection one subscriber reads a channel's segments over: one GET at a time, its
/// reply handed to the reader as it is decoded (``SegmentExchange``); TLS with the process's shared context for
/// `https` (SNI for host names, never for IP literals; ALPN `http/1.1`).
///
/// Why not the shared HTTP client: a follower at the live edge receives one small chunk per line, and through
/// a general client each chunk passes a connection and a request state machine, a back-pressured async sequence
/// and two task resumptions; here it is one lock and one resumption.
final class SegmentConnection: Sendable {
    private let origin: HTTPOrigin
    /// Characters of a request URL before its target (`http://authority`).
    private let originLength: Int
    private let group: any EventLoopGroup
    private let connectTimeout: TimeAmount
    private let tls: OutboundTLSContext?
    private let idle = RelayMutex<(any Channel)?>(nil)
    private let current = RelayMutex(CurrentGet())

    /// The GET being asked, for ``abandonCurrentGet()``.
    private struct CurrentGet {
        var channel: (any Channel)?
        var isAbandoned = false
    }

    /// A connection for `url`'s server, or `nil` when its authority does not parse (the HTTP client then reports
    /// the problem) or it is `https` and no TLS context is given.
    init?(url: TrickleChannelURL, group: any EventLoopGroup, tls: OutboundTLSContext?, connectTimeout: Duration = .seconds(5)) {
        guard let origin = HTTPOrigin(url: url.base) else { return nil }
        let schemeLength = origin.isTLS ? 8 : 7
        guard url.base.dropFirst(schemeLength).contains("/") else { return nil }
        if origin.isTLS {
            guard let tls else { return nil }
            self.tls = tls
        } else {
            self.tls = nil
        }
        self.origin = origin
        self.originLength = schemeLength + origin.authority.count
        self.group = group
        let (seconds, attoseconds) = connectTimeout.components
        self.connectTimeout = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Sends `GET url` and waits for the reply head. A kept connection that turns out closed is replaced once.
    ///
    /// - Parameter url: A full URL of this connection's server (as ``TrickleChannelURL`` builds them).
    nonisolated(nonsending) func get(_ url: String) async throws -> (SegmentExchange, HTTPResponseHead) {
        var request = HTTPRequestHead(version: .http1_1, method: .GET, uri: String(url.dropFirst(self.originLength)))
        request.headers.add(name: "Host", value: self.origin.authority)
        if let kept = self.idle.withLock({ idle in defer { idle = nil }; return idle }) {
            if kept.isActive {
                do {
                    return try await self.send(request, on: kept)
                } catch let abandoned as SegmentGetAbandoned {
                    throw abandoned
                } catch {
                    // The server closed the idle connection meanwhile — seen as an end of input, a reset, or a write
                    // on a closed socket, depending on timing: the GET is idempotent and no reply head came, so it
                    // is asked again once on a new connection (whose failure, if any, is the one reported).
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

    /// Ends the GET being asked (its reader gets an error, as when its task is cancelled), or, when it is still
    /// connecting, the GET as it is sent: the stall watchdog's way out of a GET read in the reading task itself.
    /// Holds until ``endGet()``.
    func abandonCurrentGet() {
        let channel = self.current.withLock { current in
            current.isAbandoned = true
            return current.channel
        }
        channel?.close(promise: nil)
    }

    /// The caller is done with the GET it asked (answered, failed or abandoned).
    func endGet() {
        self.current.withLock { $0 = CurrentGet() }
    }

    /// Closes the kept connection (when the subscriber ends).
    func close() {
        self.idle.withLock { idle in defer { idle = nil }; return idle }?.close(promise: nil)
    }

    nonisolated(nonsending) private func send(_ request: HTTPRequestHead, on channel: any Channel) async throws -> (SegmentExchange, HTTPResponseHead) {
        let exchange = SegmentExchange(channel: channel, request: request)
        do {
            let isAbandoned = self.current.withLock { current in
                current.channel = channel
                return current.isAbandoned
            }
            if isAbandoned { throw SegmentGetAbandoned() }
            try await channel.writeAndFlush(exchange)
            return (exchange, try await exchange.head())
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    private func connect() async throws -> any Channel {
        let tls = self.tls
        // SNI names a host; an IP literal is sent none (and is checked against the certificate's IP addresses).
        let serverName = self.origin.hostIsAddress ? nil : self.origin.host
        let loop = self.group.any()
        // Held here, not looked up in the pipeline: a failed handshake empties the pipeline before a lookup could run.
        let handshake = tls == nil ? nil : loop.makePromise(of: Void.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(self.connectTimeout)
                // getaddrinfo on the relay's own threads, never a Dispatch worker (ThreadPoolResolver).
                .resolver(ThreadPoolResolver(loop: loop))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                // Each connection keeps its receive buffer between reads. NIO's default starts it at 2 KiB; most
                // reads here are a line or two of telemetry, and the buffer still grows for a busy channel. At
                // 10,000 followed channels: 15 MiB less resident.
                .channelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls, let handshake {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: serverName))
                            try channel.pipeline.syncOperations.addHandler(TLSHandshakeWaiter(promise: handshake))
                        }
                        try channel.pipeline.syncOperations.addHandler(SegmentConnectionHandler())
                    }
                }
                .connect(host: self.origin.host, port: self.origin.port)
                .get()
        } catch {
            handshake?.fail(error)  // a promise is always completed (a no-op if the handler did)
            throw error
        }
        if let handshake {
            // A peer that accepts the connection and never answers the handshake is given the connect timeout,
            // then the connection is closed: NIOSSL itself waits for ever.
            let origin = self.origin
            let limit = self.connectTimeout
            let deadline = channel.eventLoop.scheduleTask(in: limit) {
                handshake.fail(TLSHandshakeTimedOut(authority: origin.authority, limit: limit))
                channel.close(promise: nil)
            }
            // The handshake's own error (a certificate that is not accepted) rather than a write on a closed channel.
            do {
                try await handshake.futureResult.get()
                deadline.cancel()
            } catch {
                deadline.cancel()
                channel.close(promise: nil)
                throw error
            }
        }
        return channel
    }
}

/// The stall watchdog abandoned the GET before it was sent (``SegmentConnection/abandonCurrentGet()``).
struct SegmentGetAbandoned: Error, CustomStringConvertible {
    var description: String { "the GET was abandoned by the stall watchdog" }
}

/// A TLS server accepted the connection but did not finish the handshake within the connect timeout.
struct TLSHandshakeTimedOut: Error, CustomStringConvertible {
    let authority: String
    let limit: TimeAmount

    var description: String {
        "the TLS handshake with \(self.authority) did not finish within \(self.limit.nanoseconds / 1_000_000) ms"
    }
}

/// Completes its promise when the TLS handshake is done, or fails it with the handshake's error.
private final class TLSHandshakeWaiter: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    let promise: EventLoopPromise<Void>

    init(promise: EventLoopPromise<Void>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { self.promise.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.promise.fail(SegmentConnectionClosed())
        context.fireChannelInactive()
    }
}
