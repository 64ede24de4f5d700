import Logging
import NIOHTTP1
import Testing
@testable import TrickleProtocol
import TrickleRelaySupport

/// `TrickleRequestRouter` as the pure decision it is (issue #24): a request head in, an action out — no sockets.
/// Each row is one rule of `trickle-protocol.md` §2–§7 or one of the server's own bounds.
@Suite("TrickleRequestRouter: what the server does with a request head")
struct TrickleRequestRouterTests {
    /// What the router decided, reduced to what a row checks.
    enum Decision: Equatable, CustomStringConvertible {
        case respond(Int, closes: Bool)
        case upload
        case read

        var description: String {
            switch self {
            case .respond(let status, let closes): "respond \(status)\(closes ? " and close" : "")"
            case .upload: "upload"
            case .read: "read"
            }
        }
    }

    struct Row: Sendable, CustomTestStringConvertible {
        var rule: String
        var method: HTTPMethod
        var uri: String
        var headers: [(String, String)] = []
        var autocreate = true
        var token: String? = nil
        var maximumChannels = 10_000
        /// Channels that exist before the request.
        var existing: [String] = []
        var expected: Decision

        var testDescription: String { self.rule }
    }

    static let rows: [Row] = [
        Row(rule: "GET /healthz answers 200", method: .GET, uri: "/healthz", expected: .respond(200, closes: false)),
        Row(rule: "GET /metrics needs the token when one is set", method: .GET, uri: "/metrics", token: "s3cret", expected: .respond(401, closes: false)),
        Row(rule: "GET /metrics with the bearer token", method: .GET, uri: "/metrics", headers: [("Authorization", "Bearer s3cret")], token: "s3cret", expected: .respond(200, closes: false)),
        Row(rule: "POST without the token is refused and its body not drained", method: .POST, uri: "/ch/0", token: "s3cret", expected: .respond(401, closes: true)),
        Row(rule: "a jwt= query value authorizes", method: .POST, uri: "/ch/0?jwt=s3cret", token: "s3cret", expected: .upload),
        Row(rule: "POST on a channel creates it (auto-create on)", method: .POST, uri: "/ch", expected: .respond(200, closes: false)),
        Row(rule: "POST on a channel with auto-create off: 404", method: .POST, uri: "/ch", autocreate: false, expected: .respond(404, closes: false)),
        Row(rule: "past --max-channels a new channel is 503", method: .POST, uri: "/new", maximumChannels: 1, existing: ["ch"], expected: .respond(503, closes: false)),
        Row(rule: "DELETE of an unknown channel: 400 Invalid stream", method: .DELETE, uri: "/nope", expected: .respond(400, closes: false)),
        Row(rule: "DELETE of a channel: 200", method: .DELETE, uri: "/ch", existing: ["ch"], expected: .respond(200, closes: false)),
        Row(rule: "GET /next of an unknown channel: 404", method: .GET, uri: "/nope/next", expected: .respond(404, closes: false)),
        Row(rule: "GET /next of a channel: 200", method: .GET, uri: "/ch/next", existing: ["ch"], expected: .respond(200, closes: false)),
        Row(rule: "POST /next is not a method of /next: 405, closed", method: .POST, uri: "/ch/next", existing: ["ch"], expected: .respond(405, closes: true)),
        Row(rule: "segment POST on an existing channel takes the body", method: .POST, uri: "/ch/0", existing: ["ch"], expected: .upload),
        Row(rule: "segment POST -1 takes the next seq", method: .POST, uri: "/ch/-1", existing: ["ch"], expected: .upload),
        Row(rule: "segment POST below -1: 400, closed", method: .POST, uri: "/ch/-2", existing: ["ch"], expected: .respond(400, closes: true)),
        Row(rule: "segment POST with auto-create off and no channel: 404, closed", method: .POST, uri: "/ch/0", autocreate: false, expected: .respond(404, closes: true)),
        Row(rule: "segment GET of the next seq waits for it (read)", method: .GET, uri: "/ch/0", existing: ["ch"], expected: .read),
        Row(rule: "segment GET of an unknown channel: 404", method: .GET, uri: "/nope/0", expected: .respond(404, closes: false)),
        Row(rule: "PUT on a segment: 405", method: .PUT, uri: "/ch/0", existing: ["ch"], expected: .respond(405, closes: false)),
        Row(rule: "a seq that is not a number: 400", method: .GET, uri: "/ch/abc", existing: ["ch"], expected: .respond(400, closes: false)),
    ]

    @Test("the decision table", arguments: Self.rows)
    func decide(_ row: Row) throws {
        let configuration = TrickleServer.Configuration(
            autocreate: row.autocreate,
            maximumChannels: row.maximumChannels,
            token: row.token.map(BearerToken.init)
        )
        let registry = ChannelRegistry(ringSize: 5, gracePeriod: .seconds(10), maximumChannels: row.maximumChannels)
        for name in row.existing { _ = registry.channel(named: name, creatingWith: "application/jsonl") }
        let router = TrickleRequestRouter(
            registry: registry,
            configuration: configuration,
            basePath: configuration.normalizedBasePath,
            logger: Logger(label: "router-test", factory: { _ in SwiftLogNoOpLogHandler() }),
            metrics: { "" }
        )
        var head = HTTPRequestHead(version: .http1_1, method: row.method, uri: row.uri)
        for (name, value) in row.headers { head.headers.add(name: name, value: value) }
        let decision: Decision =
            switch router.action(for: head) {
            case .respond(let response): .respond(response.status, closes: response.closeConnection)
            case .upload: .upload
            case .read: .read
            }
        #expect(decision == row.expected, "\(row.method) \(row.uri)")
    }
}
