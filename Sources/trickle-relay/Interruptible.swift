import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The exit status of a command stopped by SIGTERM or SIGINT after printing its summary (docs/configuration.md, "Exit codes").
let interruptedExitStatus: Int32 = 130

/// Runs `body` as the only service of a `ServiceGroup` whose graceful-shutdown signals are SIGTERM and SIGINT:
/// a signal cancels `body` (through `cancelWhenGracefulShutdown`), so a one-shot command (`replay`, `publish`,
/// `subscribe`) stops promptly and can still print its summary.
///
/// - Returns: `true` when a signal interrupted `body`, `false` when it ran to its end.
/// - Throws: Whatever `body` throws, except the cancellation a signal caused.
func runInterruptibly(logger: Logger, _ body: @escaping @Sendable () async throws -> Void) async throws -> Bool {
    let work = InterruptibleWork(body: body)
    let group = ServiceGroup(
        configuration: .init(
            services: [.init(service: work, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
    )
    try await group.run()
    return work.wasInterrupted
}

/// One command's work as a `Service` that a graceful shutdown cancels.
private final class InterruptibleWork: Service, CustomStringConvertible {
    let body: @Sendable () async throws -> Void
    private let interrupted = Atomic(false)

    init(body: @escaping @Sendable () async throws -> Void) { self.body = body }

    var wasInterrupted: Bool { self.interrupted.load(ordering: .relaxed) }
    var description: String { "command" }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await self.body() }
        } catch {
            // Whatever the body threw while a signal was shutting us down is the signal's doing.
            guard Task.isShuttingDownGracefully else { throw error }
            self.interrupted.store(true, ordering: .relaxed)
        }
        if Task.isShuttingDownGracefully { self.interrupted.store(true, ordering: .relaxed) }
    }
}
