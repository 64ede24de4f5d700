public import AsyncHTTPClient
public import Logging
import NIOCore
public import NIOHTTP1
public import TrickleProtocol
import TrickleRelaySupport
import ServiceLifecycleTestKit

/// A logger that drops everything: tests never touch the process-wide logging system.
public let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

/// Starts an embedded trickle server on 127.0.0.1 port 0, hands it over with its base URL and an HTTP client,
/// and tears both down afterwards. Its timers run on `clock` (a ``ManualClock`` for tests of them).
public func withTrickleServer<T: Sendable>(
    _ configuration: TrickleServer.Configuration = .init(),
    clock: some Clock<Duration> = ContinuousClock(),
    _ body: @Sendable (TrickleServer, String, HTTPClient) async throws -> T
) async throws -> T {
    var configuration = configuration
    configuration.host = "127.0.0.1"
    configuration.port = 0
    let server = TrickleServer(configuration: configuration, logger: quietLogger, clock: clock)
    return try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
        try await withTestServer(server) { port in
            let base = "http://127.0.0.1:\(port)\(configuration.basePath == "/" ? "" : configuration.basePath)"
            return try await body(server, base.hasSuffix("/") ? String(base.dropLast()) : base, client)
        }
    }
}

/// Runs `server` while `body` runs, then shuts it down *gracefully* (it stops accepting before it goes, so a
/// connection racing the shutdown is closed cleanly instead of being dropped mid-setup).
public func withTestServer<T: Sendable>(
    _ server: TrickleServer,
    _ body: (Int) async throws -> T
) async throws -> T {
    try await testGracefulShutdown { trigger in
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try await server.waitUntilListening()
            let result = try await body(port)
            trigger.triggerGracefulShutdown()
            try await group.waitForAll()
            return result
        }
    }
}

/// A loopback port nothing listens on (bound, then released): for "the server is not there" and for a server
/// process that must come back on the same port.
public func unusedPort() async throws -> Int {
    let server = TrickleServer(configuration: .init(host: "127.0.0.1", port: 0), logger: quietLogger)
    return try await withTestServer(server) { $0 }
}

/// A plain HTTP exchange for asserting on raw server behaviour.
public struct RawResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: String

    public func header(_ name: String) -> String? { self.headers[name.lowercased()] }
}

extension HTTPClient {
    public func send(_ method: HTTPMethod, _ url: String, body: String? = nil, headers: [String: String] = [:]) async throws -> RawResponse {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await self.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
        var fields: [String: String] = [:]
        for header in response.headers { fields[header.name.lowercased()] = header.value }
        return RawResponse(status: Int(response.status.code), headers: fields, body: String(buffer: bytes))
    }
}
