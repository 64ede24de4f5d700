import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import TrickleRelaySupport

/// The reply to one segment GET, read over the subscriber's own ``SegmentConnection`` (plain `http`) or through
/// the shared HTTP client (`https`).
struct SegmentReply {
    let status: Int
    let headers: HTTPHeaders
    private var source: Source

    private enum Source {
        case connection(SegmentConnection, SegmentExchange, HTTPResponseHead)
        case client(ClientBody)
    }

    /// The HTTP client's body iterator, boxed: a large value that would otherwise widen every reply, and so the
    /// frame of every subscriber's request, own-connection ones included.
    private final class ClientBody {
        var iterator: HTTPClientResponse.Body.AsyncIterator

        init(_ iterator: HTTPClientResponse.Body.AsyncIterator) {
            self.iterator = iterator
        }
    }

    /// Sends the GET and waits for the reply head.
    nonisolated(nonsending) static func get(_ url: String, connection: SegmentConnection?, httpClient: HTTPClient, logger: Logger) async throws -> SegmentReply {
        if let connection { return try await self.get(url, on: connection) }
        return try await self.get(url, through: httpClient, logger: logger)
    }

    /// On the subscriber's own connection. (Apart from the HTTP client's path: its request and response are
    /// not in this frame, which every followed channel keeps.)
    @inline(never)
    nonisolated(nonsending) private static func get(_ url: String, on connection: SegmentConnection) async throws -> SegmentReply {
        let (exchange, head) = try await connection.get(url)
        return SegmentReply(status: Int(head.status.code), headers: head.headers, source: .connection(connection, exchange, head))
    }

    @inline(never)
    nonisolated(nonsending) private static func get(_ url: String, through httpClient: HTTPClient, logger: Logger) async throws -> SegmentReply {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        let response = try await httpClient.execute(request, deadline: TrickleHTTPClient.streamingDeadline, logger: logger)
        return SegmentReply(status: Int(response.status.code), headers: response.headers, source: .client(ClientBody(response.body.makeAsyncIterator())))
    }

    /// The next body chunk, or `nil` at the end of the body.
    nonisolated(nonsending) mutating func next() async throws -> ByteBuffer? {
        switch self.source {
        case .connection(_, let exchange, _):
            return try await exchange.next()
        case .client(let body):
            return try await body.iterator.next(isolation: #isolation)
        }
    }

    /// The rest of the body, up to `limit` bytes. A longer body is not read further (a hostile server may send one
    /// without end): the reply has then not ended, so ``finish()`` closes its connection instead of keeping it.
    nonisolated(nonsending) mutating func collect(upTo limit: Int) async throws -> ByteBuffer {
        var collected = ByteBuffer()
        while var chunk = try await self.next() {
            let room = limit - collected.readableBytes
            if chunk.readableBytes > room {
                chunk.moveWriterIndex(to: chunk.readerIndex + room)
                collected.writeBuffer(&chunk)
                return collected
            }
            collected.writeBuffer(&chunk)
        }
        return collected
    }

    /// Hands the connection back (kept for the next GET only after a reply read to its end).
    func finish() {
        if case .connection(let connection, let exchange, let head) = self.source {
            connection.finished(exchange, head: head)
        }
    }
}
