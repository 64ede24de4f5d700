import NIOCore
import NIOPosix
import Synchronization
import TrickleRelaySupport

/// A loopback server that accepts connections and never reads from them or answers: a hung orchestrator, or a
/// `serve` that was SIGSTOPped. What a client sends stays in the kernel's buffers until they fill; then its writes
/// stall too.
public final class StalledServer: Sendable {
    private let accepted = RelayMutex(0)

    public init() {}

    /// Connections accepted so far.
    public var connectionsAccepted: Int { self.accepted.withLock { $0 } }

    /// Runs the server on an ephemeral loopback port while `body` runs with its base URL (`http://127.0.0.1:PORT`);
    /// the held connections are closed after it.
    public func run<T: Sendable>(_ body: @Sendable (String) async throws -> T) async throws -> T {
        let held = RelayMutex<[any Channel]>([])
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                self.accepted.withLock { $0 += 1 }
                held.withLock { $0.append(channel) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = server.localAddress?.port ?? 0
        do {
            let result = try await body("http://127.0.0.1:\(port)")
            try? await server.close()
            for channel in held.withLock({ $0 }) { try? await channel.close() }
            return result
        } catch {
            try? await server.close()
            for channel in held.withLock({ $0 }) { try? await channel.close() }
            throw error
        }
    }
}
