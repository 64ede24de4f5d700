import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import TrickleRelaySupport

/// A load generator for one channel that puts on the wire what the SDK's writer does — one streaming POST per
/// segment, one HTTP chunk per line — over a raw connection, paced by a timer on the connection's event loop.
/// An HTTP client's streaming request body costs several times more per line, and in the fleet benchmark that
/// load generator shares the two cores with the daemon and the server it is measuring.
enum ChunkedLinePublisher {
    /// Publishes `rate × seconds` lines on `path` (a channel path, `/name`), starting at `start`, in segments of
    /// `segmentLines` lines; `line(n)` makes line `n` (without its newline) when it is written.
    static func publish(
        host: String,
        port: Int,
        path: String,
        rate: Int,
        seconds: Int,
        segmentLines: Int,
        start: NIODeadline,
        tls: NIOSSLContext? = nil,
        line: @escaping @Sendable (Int) -> String
    ) async throws {
        let channel = try await Self.connect(host: host, port: port, tls: tls)
        try await Self.publish(on: channel, path: path, rate: rate, seconds: seconds, segmentLines: segmentLines, start: start, line: line)
        await Self.end(channel)
    }

    /// The connection a publisher writes on (connected ahead, so a fleet can connect in batches).
    static func connect(host: String, port: Int, tls: NIOSSLContext? = nil) async throws -> any Channel {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: nil)) }
                }
            }
            .connect(host: host, port: port)
            .get()
    }

    /// Publishes on a connection made by ``connect(host:port:tls:)``, as ``publish(host:port:path:rate:seconds:segmentLines:start:tls:line:)``,
    /// and returns once the last line is written, leaving the connection open: ``end(_:)`` closes it. (A fleet ends
    /// its thousands of connections after the measurement: their teardown is the load generator's work, not the
    /// daemon's, and done in the same second it took both cores from the last lines' delivery.)
    static func publish(
        on channel: any Channel,
        path: String,
        rate: Int,
        seconds: Int,
        segmentLines: Int,
        start: NIODeadline,
        line: @escaping @Sendable (Int) -> String
    ) async throws {
        let total = rate * seconds
        let tick = TimeAmount.nanoseconds(max(10_000_000, 1_000_000_000 / Int64(max(rate, 1))))
        let state = RelayMutex(Progress())
        let finished = channel.eventLoop.makePromise(of: Void.self)
        let segmentLines = max(segmentLines, 1)
        channel.eventLoop.scheduleRepeatedTask(initialDelay: max(start - .now(), .zero), delay: tick) { task in
            let elapsed = NIODeadline.now() - start
            let due = min(total, Int(Int64(rate) * elapsed.nanoseconds / 1_000_000_000))
            var progress = state.withLock { $0 }
            while progress.sent < due {
                if !progress.segmentOpen {
                    let head = "POST \(path)/\(progress.seq) HTTP/1.1\r\nHost: bench\r\nContent-Type: application/jsonl\r\nTransfer-Encoding: chunked\r\n\r\n"
                    channel.write(ByteBuffer(string: head), promise: nil)
                    progress.segmentOpen = true
                }
                let text = line(progress.sent) + "\n"
                channel.write(ByteBuffer(string: String(text.utf8.count, radix: 16) + "\r\n" + text + "\r\n"), promise: nil)
                progress.sent += 1
                if progress.sent % segmentLines == 0 || progress.sent == total {
                    channel.write(ByteBuffer(string: "0\r\n\r\n"), promise: nil)
                    progress.segmentOpen = false
                    progress.seq += 1
                }
            }
            state.withLock { $0 = progress }
            channel.flush()
            if progress.sent >= total {
                task.cancel()
                finished.succeed()
            }
        }
        try await finished.futureResult.get()
    }

    /// Ends a publisher's connection: the server reads every chunk before the end of input, answers the last POST,
    /// and closes (10 s at most).
    static func end(_ channel: any Channel) async {
        try? await channel.close(mode: .output).get()
        let closed = channel.eventLoop.makePromise(of: Void.self)
        channel.closeFuture.cascade(to: closed)
        let deadline = channel.eventLoop.scheduleTask(in: .seconds(10)) { closed.succeed() }
        try? await closed.futureResult.get()
        deadline.cancel()
        try? await channel.close()
    }

    private struct Progress {
        var sent = 0
        var seq = 0
        var segmentOpen = false
    }
}
