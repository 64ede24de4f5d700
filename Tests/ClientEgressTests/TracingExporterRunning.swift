import Logging
import RelayTracing
import ServiceLifecycle

/// Runs `body` while `tracing`'s exporter runs beside it, then shuts the exporter down gracefully (buffered spans
/// are exported) before returning — what a process does by putting `tracing.service` first in its one
/// `ServiceGroup`.
func withTracingExporter<Result: Sendable>(
    _ tracing: RelayTracing,
    logger: Logger,
    _ body: @Sendable () async throws -> Result
) async throws -> Result {
    let group = ServiceGroup(configuration: .init(services: [.init(service: tracing.service)], gracefulShutdownSignals: [], logger: logger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            let result = try await body()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}
