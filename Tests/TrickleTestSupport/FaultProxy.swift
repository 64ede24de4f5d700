#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import Synchronization
import TrickleRelaySupport

/// A TCP proxy placed between two parties of a test (runner → server, server → client) that injects a fault class
/// on demand, switched while traffic flows: a new class of fault is a new mode, not a new harness.
///
/// ```swift
/// let proxy = FaultProxy(targetPort: serverPort)
/// try await proxy.run { port in
///     // point the runner at 127.0.0.1:port …
///     proxy.mode = .stall          // the peer stops reading and answering
///     proxy.mode = .pass           // and comes back
/// }
/// ```
public final class FaultProxy: Sendable {
    /// What the proxy does to the bytes of every connection through it.
    public enum Mode: Sendable, Equatable {
        /// Bytes flow both ways.
        case pass
        /// Nothing is read from either side (a peer that stopped reading: a hung or SIGSTOPped process); the
        /// bytes already read are held until the mode changes.
        case stall
        /// Packets vanish (a network black hole): over TCP that is a stall both ways — nothing passes, nothing is
        /// answered, retransmission delivers it all once the hole closes — so it behaves as ``stall``, named for
        /// the scenario tables.
        case blackHole
        /// Every connection is cut (reset) and new ones are refused at once (a process that is gone).
        case down
        /// Each chunk is forwarded after this delay.
        case delay(Duration)
        /// At most this many bytes per second each way.
        case throttle(bytesPerSecond: Int)
        /// A connection is reset after this many bytes went through it (both directions counted).
        case resetAfter(bytes: Int)
    }

    private struct State {
        var mode: Mode = .pass
        var connections: [ObjectIdentifier: Pair] = [:]
        var accepted = 0
        var bytes = 0
    }

    /// One proxied connection: the accepted side and the side towards the target.
    final class Pair: Sendable {
        let inbound: any Channel
        let outbound: RelayMutex<(any Channel)?> = RelayMutex(nil)
        let forwarded = RelayMutex(0)
        /// When the last chunk each way is due (towards the target, back): a delayed or throttled chunk never
        /// overtakes the one before it.
        let due = RelayMutex((towardsTarget: NIODeadline.distantPast, back: NIODeadline.distantPast))
        /// Reading starts once both sides are up: the accepted side active (a `read()` before that is dropped)
        /// and the target connected.
        let ready = RelayMutex((inboundActive: false, outboundConnected: false, started: false))

        /// Called when either side comes up; kicks off reading once both are, exactly once.
        func startIfReady(holding: Bool) {
            let start = self.ready.withLock { ready -> Bool in
                guard ready.inboundActive, ready.outboundConnected, !ready.started else { return false }
                ready.started = true
                return true
            }
            guard start, !holding else { return }
            self.inbound.read()
            self.outbound.withLock { $0 }?.read()
        }

        init(inbound: any Channel) { self.inbound = inbound }

        func closeBoth() {
            self.inbound.close(promise: nil)
            self.outbound.withLock { $0 }?.close(promise: nil)
        }
    }

    public let targetHost: String
    public let targetPort: Int
    private let state = RelayMutex(State())

    public init(targetHost: String = "127.0.0.1", targetPort: Int) {
        self.targetHost = targetHost
        self.targetPort = targetPort
    }

    /// The mode now; setting it applies to every connection at once (`.down` cuts them).
    public var mode: Mode {
        get { self.state.withLock { $0.mode } }
        set {
            let (cut, resume): ([Pair], [Pair]) = self.state.withLock { state in
                let previous = state.mode
                state.mode = newValue
                let pairs = Array(state.connections.values)
                if newValue == .down { return (pairs, []) }
                return (previous.holds && !newValue.holds) ? ([], pairs) : ([], [])
            }
            for pair in cut { Self.reset(pair.inbound); pair.outbound.withLock { $0 }.map(Self.reset) }
            // Reading resumes where a stall held it.
            for pair in resume {
                pair.inbound.read()
                pair.outbound.withLock { $0 }?.read()
            }
        }
    }

    /// Connections accepted so far.
    public var connectionsAccepted: Int { self.state.withLock { $0.accepted } }
    /// Bytes forwarded so far, both ways.
    public var bytesForwarded: Int { self.state.withLock { $0.bytes } }

    /// Runs the proxy on an ephemeral loopback port while `body` runs with that port.
    public func run<T: Sendable>(_ body: @Sendable (Int) async throws -> T) async throws -> T {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try self.accept(channel)
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = server.localAddress?.port ?? 0
        do {
            let result = try await body(port)
            await self.shutdown(server)
            return result
        } catch {
            await self.shutdown(server)
            throw error
        }
    }

    private func shutdown(_ server: any Channel) async {
        try? await server.close()
        for pair in self.state.withLock({ Array($0.connections.values) }) { pair.closeBoth() }
    }

    private func accept(_ inbound: any Channel) throws {
        let pair = Pair(inbound: inbound)
        let mode = self.state.withLock { state -> Mode in
            state.accepted += 1
            state.connections[ObjectIdentifier(inbound)] = pair
            return state.mode
        }
        inbound.closeFuture.whenComplete { _ in
            self.state.withLock { _ = $0.connections.removeValue(forKey: ObjectIdentifier(inbound)) }
            pair.outbound.withLock { $0 }?.close(promise: nil)
        }
        if mode == .down {
            Self.reset(inbound)
            return
        }
        try inbound.pipeline.syncOperations.addHandler(Relay(proxy: self, pair: pair, towardsTarget: true))
        ClientBootstrap(group: inbound.eventLoop)
            .channelOption(.autoRead, value: false)
            .channelInitializer { outbound in
                outbound.eventLoop.makeCompletedFuture {
                    try outbound.pipeline.syncOperations.addHandler(Relay(proxy: self, pair: pair, towardsTarget: false))
                }
            }
            .connect(host: self.targetHost, port: self.targetPort)
            .whenComplete { result in
                switch result {
                case .success(let outbound):
                    pair.outbound.withLock { $0 = outbound }
                    outbound.closeFuture.whenComplete { _ in inbound.close(promise: nil) }
                    pair.ready.withLock { $0.outboundConnected = true }
                    pair.startIfReady(holding: self.mode.holds)
                case .failure:
                    inbound.close(promise: nil)
                }
            }
    }

    /// Closes with RST (SO_LINGER 0), as a process that died or a middlebox that dropped the connection.
    static func reset(_ channel: any Channel) {
        guard let provider = channel as? any SocketOptionProvider else {
            channel.close(promise: nil)
            return
        }
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
    }

    /// Decides what happens to `bytes` read from one side: forwarded (now, later, or throttled), dropped, or the
    /// connection cut.
    fileprivate func forward(_ bytes: ByteBuffer, from pair: Pair, towardsTarget: Bool, on source: any Channel) {
        let mode = self.mode
        let destination: (any Channel)? = towardsTarget ? pair.outbound.withLock { $0 } : pair.inbound
        switch mode {
        case .down:
            pair.closeBoth()
            return
        case .resetAfter(let limit):
            let total = pair.forwarded.withLock { count -> Int in
                count += bytes.readableBytes
                return count
            }
            if total > limit {
                Self.reset(pair.inbound)
                pair.outbound.withLock { $0 }.map(Self.reset)
                return
            }
        default:
            break
        }
        guard let destination else { return }
        self.state.withLock { $0.bytes += bytes.readableBytes }
        let now = NIODeadline.now()
        let dueAt: NIODeadline? = {
            let previous = pair.due.withLock { towardsTarget ? $0.towardsTarget : $0.back }
            switch mode {
            case .delay(let delay):
                return max(now + .nanoseconds(Int64(delay.components.seconds) * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000), previous)
            case .throttle(let rate):
                return max(now, previous) + .nanoseconds(Int64(bytes.readableBytes) * 1_000_000_000 / Int64(max(rate, 1)))
            default:
                return previous > now ? previous : nil
            }
        }()
        if let dueAt {
            pair.due.withLock { if towardsTarget { $0.towardsTarget = dueAt } else { $0.back = dueAt } }
        }
        let readNext: @Sendable () -> Void = {
            // Back-pressure: the next read from the source only once the destination took this chunk, and not
            // while the proxy stalls.
            if !self.mode.holds { source.read() }
        }
        if let dueAt {
            source.eventLoop.scheduleTask(deadline: dueAt) {
                destination.writeAndFlush(bytes).whenComplete { _ in readNext() }
            }
        } else {
            destination.writeAndFlush(bytes).whenComplete { _ in readNext() }
        }
    }

    /// Reads one side, hands each chunk to the proxy, and closes the pair when that side closes.
    private final class Relay: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let proxy: FaultProxy
        let pair: Pair
        let towardsTarget: Bool

        init(proxy: FaultProxy, pair: Pair, towardsTarget: Bool) {
            self.proxy = proxy
            self.pair = pair
            self.towardsTarget = towardsTarget
        }

        func channelActive(context: ChannelHandlerContext) {
            if self.towardsTarget {
                self.pair.ready.withLock { $0.inboundActive = true }
                self.pair.startIfReady(holding: self.proxy.mode.holds)
            }
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.proxy.forward(self.unwrapInboundIn(data), from: self.pair, towardsTarget: self.towardsTarget, on: context.channel)
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.pair.closeBoth()
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

extension FaultProxy.Mode {
    /// Whether nothing may be read (a stall, a black hole).
    var holds: Bool { self == .stall || self == .blackHole }
}
