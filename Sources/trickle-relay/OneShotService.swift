import ServiceLifecycle

/// Runs `body` once as a service of the group (ended early by graceful shutdown): e.g. printing the endpoint's URL
/// once it listens.
struct OneShotService: Service, CustomStringConvertible {
    let description: String
    let body: @Sendable () async -> Void

    init(name: String, body: @escaping @Sendable () async -> Void) {
        self.description = name
        self.body = body
    }

    func run() async throws {
        await cancelWhenGracefulShutdown { await self.body() }
    }
}
