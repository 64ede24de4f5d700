import NIOCore
import NIOHTTP1
import TrickleRelaySupport

/// The one handler of a ``SegmentConnection``'s pipeline: writes each GET, parses its reply
/// (``SegmentReplyParser``) and hands it to the ``SegmentExchange`` as it arrives, on the event loop.
final class SegmentConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = SegmentExchange
    typealias OutboundOut = ByteBuffer

    /// The GET whose reply is arriving (one at a time: the connection never pipelines).
    private var current: SegmentExchange?
    private var parser = SegmentReplyParser()

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
        self.parser.expectReply()
        context.writeAndFlush(self.wrapOutboundOut(Self.encode(exchange.request, allocator: context.channel.allocator)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = self.unwrapInboundIn(data)
        let exchange = self.current
        do {
            try self.parser.feed(bytes) { event in
                switch event {
                case .head(let head, let reusable):
                    exchange?.receive(head: head, reusable: reusable)
                case .body(let chunk):
                    exchange?.receive(body: chunk)
                case .end:
                    self.current = nil
                    exchange?.receiveEnd()
                }
            }
        } catch {
            // Out of step with the server (a reply nobody asked for, or one we cannot read): the connection is done.
            exchange?.fail(error)
            self.current = nil
            context.close(promise: nil)
        }
    }

    func read(context: ChannelHandlerContext) {
        // Held while the reader is far behind; it calls `channel.read()` once it caught up.
        if let exchange = self.current, exchange.holdsRead() { return }
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let exchange = self.current {
            self.current = nil
            // A body that runs to the close ends cleanly here; any other reply was cut short (failing an ended
            // exchange is a no-op).
            try? self.parser.connectionClosed { event in
                if case .end = event { exchange.receiveEnd() }
            }
            exchange.fail(SegmentConnectionClosed())
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.current?.fail(error)
        self.current = nil
        context.close(promise: nil)
    }

    /// `GET target HTTP/1.1` and the request's headers. Target and headers come from a ``TrickleChannelURL``,
    /// which refuses spaces and control characters: nothing here can split the request.
    private static func encode(_ request: HTTPRequestHead, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64 + request.uri.utf8.count)
        buffer.writeString("\(request.method.rawValue) \(request.uri) HTTP/1.1\r\n")
        for (name, value) in request.headers { buffer.writeString("\(name): \(value)\r\n") }
        buffer.writeString("\r\n")
        return buffer
    }
}
