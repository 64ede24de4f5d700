public import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycleTestKit
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// A loopback HTTP server that answers every request by a script: for impersonating a broken or hostile
/// trickle server (or any peer) in tests.
public final class ScriptedHTTPServer: Sendable {
    /// A request as the script sees it.
    public struct Request: Sendable {
        public var method: HTTPRequest.Method
        public var path: String
        public var headers: HTTPFields
        public var body: String
    }

    /// The script's answer.
    public struct Answer: Sendable {
        public var status: HTTPResponse.Status
        public var headers: HTTPFields
        public var body: String
        /// Whether the request body is read before answering (`false`: answered as soon as the head arrives,
        /// like a server refusing a POST before it consumed a byte).
        public var readsBody: Bool

        public init(_ status: HTTPResponse.Status, headers: HTTPFields = [:], body: String = "", readsBody: Bool = true) {
            self.status = status
            self.headers = headers
            self.body = body
            self.readsBody = readsBody
        }
    }

    public typealias Script = @Sendable (Request, Int) -> Answer

    private let script: Script
    private let log = RelayMutex<[Request]>([])

    public init(script: @escaping Script) {
        self.script = script
    }

    /// Every request so far, in order.
    public var requests: [Request] { self.log.withLock { $0 } }

    /// Serves on 127.0.0.1 port 0 while `body` runs with the base URL (`http://127.0.0.1:PORT`).
    public func run<T: Sendable>(_ body: @Sendable (String) async throws -> T) async throws -> T {
        let router = Router()
        router.on("**", method: .get) { request, _ in try await self.answer(request) }
        router.on("**", method: .post) { request, _ in try await self.answer(request) }
        router.on("**", method: .delete) { request, _ in try await self.answer(request) }
        let listening = OneShotSignal<Int>()
        let application = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { listening.fulfill($0.localAddress?.port ?? 0) },
            logger: quietLogger
        )
        return try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    try await application.run()
                    return nil
                }
                let port = await listening.wait() ?? 0
                let result = try await body("http://127.0.0.1:\(port)")
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
                return result
            }
        }
    }

    private func answer(_ request: Hummingbird.Request) async throws -> Response {
        // The script sees the head first (body ""): it decides whether the body is read at all.
        var recorded = Request(method: request.method, path: request.uri.path, headers: request.headers, body: "")
        let index = self.log.withLock { log in
            log.append(recorded)
            return log.count - 1
        }
        let answer = self.script(recorded, index)
        if answer.readsBody {
            recorded.body = String(buffer: try await request.body.collect(upTo: 16 * 1024 * 1024))
            self.log.withLock { $0[index] = recorded }
        }
        var headers = answer.headers
        headers[.contentLength] = "\(answer.body.utf8.count)"
        return Response(status: answer.status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: answer.body)))
    }
}
