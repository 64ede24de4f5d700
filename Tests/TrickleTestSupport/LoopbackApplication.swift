public import Hummingbird
import ServiceLifecycleTestKit
import TrickleProtocol
import TrickleRelaySupport

/// Runs a Hummingbird router on 127.0.0.1 (a port the kernel picks) while `body` runs with its port, then shuts
/// it down gracefully: the local endpoints the tests script (metrics API, OTLP receiver).
public func withLoopbackApplication(
    _ router: Router<BasicRequestContext>,
    _ body: @Sendable (Int) async throws -> Void
) async throws {
    let listening = OneShotSignal<Int>()
    let application = Application(
        router: router,
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
