import Foundation
public import HTTPTypes
import Hummingbird
import NIOCore
public import NIOSSL
import ServiceLifecycleTestKit
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// A local metrics endpoint that answers by a script and records what it accepted.
///
/// With `honoursIdempotencyKey` it behaves like an API that implements `Idempotency-Key`: a request whose key it
/// already accepted is answered 200 again without being applied (recorded with ``Request/isReplay``).
public final class ScriptedEndpoint: Sendable {
    public struct Request: Sendable {
        public var authorization: String?
        public var idempotencyKey: String?
        public var ids: [String]
        public var body: String
        /// A request with an already accepted key, answered without being applied.
        public var isReplay = false
    }

    public typealias Rule = @Sendable (Request, Int) -> (status: HTTPResponse.Status, headers: HTTPFields)

    private let rule: Rule
    private let honoursIdempotencyKey: Bool
    private let log = RelayMutex<[(Request, HTTPResponse.Status)]>([])
    private let acceptedKeys = RelayMutex<Set<String>>([])

    public init(honoursIdempotencyKey: Bool = false, rule: @escaping Rule) {
        self.honoursIdempotencyKey = honoursIdempotencyKey
        self.rule = rule
    }

    /// Ids of events in batches the endpoint accepted (2xx) and applied, in order.
    public var acceptedIDs: [String] {
        self.log.withLock { $0.filter { (200..<300).contains($0.1.code) && !$0.0.isReplay }.flatMap(\.0.ids) }
    }
    /// Ids of events in requests answered as replays of an accepted key (sent again, not applied).
    public var replayedIDs: [String] { self.log.withLock { $0.filter(\.0.isReplay).flatMap(\.0.ids) } }
    public var requests: [(Request, HTTPResponse.Status)] { self.log.withLock { $0 } }

    /// Serves on 127.0.0.1 while `body` runs with the endpoint's URL: `http://…/v1/metrics`, or `https://…` with
    /// `tls` (a server configuration).
    public func run(tls: TLSConfiguration? = nil, _ body: @Sendable (String) async throws -> Void) async throws {
        let router = Router()
        router.post("v1/metrics") { request, _ -> Response in
            let bytes = try await request.body.collect(upTo: 16 * 1024 * 1024)
            let text = String(buffer: bytes)
            let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
            let ids = (object?["events"] as? [[String: Any]])?.compactMap { $0["id"] as? String } ?? []
            var recorded = Request(
                authorization: request.headers[.authorization],
                idempotencyKey: request.headers[HTTPField.Name("Idempotency-Key")!],
                ids: ids,
                body: text
            )
            if self.honoursIdempotencyKey, let key = recorded.idempotencyKey, self.acceptedKeys.withLock({ $0.contains(key) }) {
                recorded.isReplay = true
                self.log.withLock { $0.append((recorded, .ok)) }
                return Response(status: .ok)
            }
            let index = self.log.withLock { $0.count }
            let (status, headers) = self.rule(recorded, index)
            if let key = recorded.idempotencyKey, (200..<300).contains(status.code) { self.acceptedKeys.withLock { _ = $0.insert(key) } }
            self.log.withLock { $0.append((recorded, status)) }
            return Response(status: status, headers: headers)
        }
        let scheme = tls == nil ? "http" : "https"
        try await withLoopbackApplication(router, tls: tls) { port in try await body("\(scheme)://127.0.0.1:\(port)/v1/metrics") }
    }
}
