import NIOCore
import NIOHTTP1

/// The last handler of a ``SegmentConnection``'s pipeline (after NIOHTTP1's client codec): sends each GET written
/// to it and hands its reply to the ``SegmentExchange``, on the event loop, as the decoder produces it.
final class SegmentConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = SegmentExchange
    typealias OutboundOut = HTTPClientRequestPart

    /// The GET whose reply is arriving (one at a time: the connection never pipelines).
    private var current: SegmentExchange?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = self.unwrapOutboundIn(data)
        if let previous = self.current {
            // A GET written before the last reply ended would get that reply's tail: never reuse such a connection.
            previous.fail(SegmentConnectionClosed())
            exchange.fail(SegmentConnectionClosed())
            promise?.fail(SegmentConnectionClosed())
            context.close(promise: nil)
            return
        }
        self.current = exchange
        context.write(self.wrapOutboundOut(.head(exchange.request)), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange = self.current else {
            // A reply nobody asked for: the connection is out of step with the server.
            context.close(promise: nil)
            return
        }
        switch self.unwrapInboundIn(data) {
        case .head(let head) where (100..<200).contains(head.status.code) && head.status != .switchingProtocols:
            break  // an interim reply (the decoder drops these too): the real one follows
        case .head(let head):
            exchange.receive(head: head)
        case .body(let chunk):
            exchange.receive(body: chunk)
        case .end:
            self.current = nil
            exchange.receiveEnd()
        }
    }

    func read(context: ChannelHandlerContext) {
        // Held while the reader is far behind; it calls `channel.read()` once it caught up.
        if let exchange = self.current, exchange.holdsRead() { return }
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.current?.fail(SegmentConnectionClosed())
        self.current = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.current?.fail(error)
        self.current = nil
        context.close(promise: nil)
    }
}
