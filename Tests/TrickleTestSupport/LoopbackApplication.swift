public import Hummingbird
import HummingbirdTLS
public import NIOSSL
import ServiceLifecycleTestKit
import TrickleProtocol
import TrickleRelaySupport

/// Runs a Hummingbird router on 127.0.0.1 (a port the kernel picks) while `body` runs with its port, then shuts
/// it down gracefully: the local endpoints the tests script (metrics API, OTLP receiver). With `tls`, it serves
/// HTTPS (HTTP/1.1).
public func withLoopbackApplication(
    _ router: Router<BasicRequestContext>,
    tls: TLSConfiguration? = nil,
    _ body: @Sendable (Int) async throws -> Void
) async throws {
    let listening = OneShotSignal<Int>()
    let application = Application(
        router: router,
        server: try tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1(),
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { listening.fulfill($0.localAddress?.port ?? 0) },
        logger: quietLogger
    )
    try await testGracefulShutdown { trigger in
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await application.run() }
            let port = await listening.wait() ?? 0
            try await body(port)
            trigger.triggerGracefulShutdown()
            try await group.waitForAll()
        }
    }
}
