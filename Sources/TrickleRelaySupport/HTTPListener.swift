public import Hummingbird
public import Logging

/// Builds the Hummingbird application of a small local HTTP service (the runner's ingest API, the client's
/// stream endpoint) and announces the port it listens on (`0` in the configuration picks a free one).
public final class HTTPListener: Sendable {
    /// The host and port asked for.
    public let host: String
    public let port: Int
    private let listening = OneShotSignal<Int>()

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Waits until the application listens; returns its port (`-1` after ``giveUp()``).
    public func waitUntilListening() async throws -> Int {
        guard let port = await self.listening.wait() else { throw CancellationError() }
        return port
    }

    /// Whether the application came up.
    public var isListening: Bool { (self.listening.value ?? -1) >= 0 }

    /// Tells waiters the application will not listen (they get `-1`).
    public func giveUp() {
        self.listening.fulfill(-1)
    }

    /// The application serving `router` on the host and port, announcing its port once it listens.
    ///
    /// - Parameter idleTimeout: A connection that completes no request part for this long is closed: an idle
    ///   keep-alive connection, or one that trickles its headers byte by byte (only whole parts count). A
    ///   response being written (an SSE stream) is never cut. Default 30 s.
    public func application<Context: RequestContext>(
        router: Router<Context>,
        logger: Logger,
        idleTimeout: Duration = .seconds(30)
    ) -> some ApplicationProtocol where Context.Source == ApplicationRequestContextSource {
        Application(
            router: router,
            server: .http1(configuration: .init(idleTimeout: .nanoseconds(Int64(idleTimeout.components.seconds) * 1_000_000_000 + idleTimeout.components.attoseconds / 1_000_000_000))),
            configuration: .init(address: .hostname(self.host, port: self.port), serverName: nil),
            onServerRunning: { channel in self.listening.fulfill(channel.localAddress?.port ?? 0) },
            logger: logger
        )
    }
}
