import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import TrickleRelaySupport

/// Fetches a server's certificate to say why it was not accepted: one TLS handshake that accepts whatever the
/// server presents, sends nothing and closes. Bounded (5 s) and cached per server for a minute, so a failure
/// retried with back-off probes at most once a minute.
final class TLSPeerProbe: Sendable {
    static let shared = TLSPeerProbe()

    private struct Remembered {
        var certificate: NIOSSLCertificate?
        var at: ContinuousClock.Instant
    }

    private let cache = RelayMutex<[String: Remembered]>([:])
    private let context: NIOSSLContext?
    private let timeout: Duration = .seconds(5)
    private let memory: Duration = .seconds(60)

    init() {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.applicationProtocols = ["http/1.1"]
        self.context = try? NIOSSLContext(configuration: configuration)
    }

    /// The first certificate `host:port` presents, or `nil` when the handshake did not get that far.
    func leafCertificate(host: String, port: Int) async -> NIOSSLCertificate? {
        let key = "\(host):\(port)"
        let now = ContinuousClock.now
        if let remembered = self.cache.withLock({ $0[key] }), now - remembered.at < self.memory {
            return remembered.certificate
        }
        let certificate = await self.handshake(host: host, port: port)
        self.cache.withLock { cache in
            if cache.count > 1_000 { cache.removeAll() }
            cache[key] = Remembered(certificate: certificate, at: now)
        }
        return certificate
    }

    private func handshake(host: String, port: Int) async -> NIOSSLCertificate? {
        guard let context = self.context else { return nil }
        let group = MultiThreadedEventLoopGroup.singleton
        let result = group.next().makePromise(of: NIOSSLCertificate?.self)
        let settled = RelayMutex(false)
        @Sendable func settle(_ certificate: NIOSSLCertificate?) {
            guard settled.withLock({ done in defer { done = true }; return !done }) else { return }
            result.succeed(certificate)
        }
        // SNI carries host names only, never an IP literal.
        let serverName = host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.nanoseconds(Int64(self.timeout.components.seconds) * 1_000_000_000))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = try NIOSSLClientHandler(context: context, serverHostname: serverName) { certificates, promise in
                        settle(certificates.first)
                        promise.succeed(.certificateVerified)
                    }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            return nil
        }
        channel.closeFuture.whenComplete { _ in settle(nil) }
        let deadline = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(self.timeout.components.seconds) * 1_000_000_000)) {
            settle(nil)
        }
        let certificate = try? await result.futureResult.get()
        deadline.cancel()
        channel.close(promise: nil)
        return certificate ?? nil
    }
}
