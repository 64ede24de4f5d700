import NIOCore
import NIOPosix
import Synchronization
import TrickleRelaySupport

/// A loopback HTTP/1.1 server that answers each request head with the raw bytes a script returns, and closes the
/// connection when told to: for what a real server does to a client's connections (closes an idle one, answers
/// `Connection: close`, cuts a reply short), which a server framework will not do on request.
public final class RawScriptedServer: Sendable {
    /// What to send for one request, and whether to close the connection after it.
    public struct Reply: Sendable {
        public var bytes: String
        public var closesConnection: Bool

        public init(_ bytes: String, closesConnection: Bool = false) {
            self.bytes = bytes
            self.closesConnection = closesConnection
        }

        /// A complete reply with a `Content-Length` body.
        public static func status(_ code: Int, headers: [String: String] = [:], body: String = "", closesConnection: Bool = false) -> Reply {
            var head = "HTTP/1.1 \(code) Status\r\nContent-Length: \(body.utf8.count)\r\n"
            for (name, value) in headers.sorted(by: { $0.key < $1.key }) { head += "\(name): \(value)\r\n" }
            return Reply(head + "\r\n" + body, closesConnection: closesConnection)
        }
    }

    /// Answers the request whose request line (`GET /ch/0 HTTP/1.1`) is given; `index` counts requests from 0.
    public typealias Script = @Sendable (_ requestLine: String, _ index: Int) -> Reply

    private struct State {
        var requests: [String] = []
        var connections = 0
    }

    private let script: Script
    private let state = RelayMutex(State())

    public init(script: @escaping Script) {
        self.script = script
    }

    /// The request lines received so far.
    public var requests: [String] { self.state.withLock { $0.requests } }
    /// Connections accepted so far.
    public var connectionsAccepted: Int { self.state.withLock { $0.connections } }

    /// Runs the server on an ephemeral loopback port while `body` runs with its base URL (`http://127.0.0.1:PORT`).
    public func run<T: Sendable>(_ body: @Sendable (String) async throws -> T) async throws -> T {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                self.state.withLock { $0.connections += 1 }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(server: self))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        do {
            let result = try await body("http://127.0.0.1:\(server.localAddress!.port!)")
            try? await server.close()
            return result
        } catch {
            try? await server.close()
            throw error
        }
    }

    fileprivate func reply(to requestLine: String) -> Reply {
        let index = self.state.withLock { state in
            state.requests.append(requestLine)
            return state.requests.count - 1
        }
        return self.script(requestLine, index)
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        private let server: RawScriptedServer
        private var pending = ByteBuffer()

        init(server: RawScriptedServer) {
            self.server = server
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = self.unwrapInboundIn(data)
            self.pending.writeBuffer(&bytes)
            // Requests without bodies (GETs): each ends at the first empty line.
            while let headLength = Self.headLength(in: self.pending) {
                let head = self.pending.readString(length: headLength) ?? ""
                let requestLine = String(head.prefix { $0 != "\r" })
                let reply = self.server.reply(to: requestLine)
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: reply.bytes)), promise: nil)
                if reply.closesConnection {
                    context.close(promise: nil)
                    return
                }
            }
        }

        /// Bytes up to and including the first `\r\n\r\n`, or `nil` while the head is incomplete.
        static func headLength(in buffer: ByteBuffer) -> Int? {
            let bytes = Array(buffer.readableBytesView)
            guard bytes.count >= 4 else { return nil }
            for index in 0...(bytes.count - 4) where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
                return index + 4
            }
            return nil
        }
    }
}
