import Foundation
public import HTTPTypes
import Hummingbird
import NIOCore
public import NIOSSL
import ServiceLifecycleTestKit
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// A local OTLP/HTTP receiver (JSON encoding) for `/v1/logs` and `/v1/traces`: answers by a script and decodes
/// what it accepted, so tests assert on log records and spans as a Collector would see them.
public final class OTLPReceiver: Sendable {
    /// One log record as received.
    public struct LogRecord: Sendable {
        /// `body.stringValue`.
        public var body: String
        public var attributes: [String: String]
        public var traceID: String?
        public var spanID: String?
        public var timeUnixNano: String?
    }

    /// One span as received.
    public struct Span: Sendable {
        public var name: String
        public var traceID: String
        public var spanID: String
        public var parentSpanID: String
        public var links: [(traceID: String, spanID: String)]
        public var serviceName: String?
    }

    /// One request, whatever the answer.
    public struct Request: Sendable {
        public var path: String
        public var contentType: String?
        public var traceparent: String?
        public var headers: [String: String]
        public var status: HTTPResponse.Status
    }

    public typealias Rule = @Sendable (_ path: String, _ index: Int) -> HTTPResponse.Status

    private struct Received {
        var logs: [LogRecord] = []
        var spans: [Span] = []
        var requests: [Request] = []
    }

    private let rule: Rule
    private let received = RelayMutex(Received())

    /// - Parameter rule: The status for the `index`-th request (counted over both paths).
    public init(rule: @escaping Rule = { _, _ in .ok }) {
        self.rule = rule
    }

    public var logRecords: [LogRecord] { self.received.withLock { $0.logs } }
    public var spans: [Span] { self.received.withLock { $0.spans } }
    public var requests: [Request] { self.received.withLock { $0.requests } }

    /// Runs the receiver while `body` runs; `body` gets its base URL (`http://127.0.0.1:PORT`, or `https://…`
    /// with `tls`, a server configuration).
    public func run(tls: TLSConfiguration? = nil, _ body: @Sendable (String) async throws -> Void) async throws {
        let router = Router()
        router.post("v1/logs") { request, _ in try await self.handle(request, path: "/v1/logs") }
        router.post("v1/traces") { request, _ in try await self.handle(request, path: "/v1/traces") }
        let scheme = tls == nil ? "http" : "https"
        try await withLoopbackApplication(router, tls: tls) { port in try await body("\(scheme)://127.0.0.1:\(port)") }
    }

    private func handle(_ request: Hummingbird.Request, path: String) async throws -> Response {
        let bytes = try await request.body.collect(upTo: 64 * 1024 * 1024)
        let index = self.received.withLock { $0.requests.count }
        let status = self.rule(path, index)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let recorded = Request(
            path: path,
            contentType: request.headers[.contentType],
            traceparent: request.headers[HTTPField.Name("traceparent")!],
            headers: headers,
            status: status
        )
        let object = (try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any]
        self.received.withLock { received in
            received.requests.append(recorded)
            guard (200..<300).contains(status.code), let object else { return }
            if path == "/v1/logs" { received.logs += Self.logRecords(in: object) } else { received.spans += Self.spans(in: object) }
        }
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
    }

    private static func attributes(_ list: Any?) -> [String: String] {
        var result: [String: String] = [:]
        for attribute in list as? [[String: Any]] ?? [] {
            guard let key = attribute["key"] as? String, let value = attribute["value"] as? [String: Any] else { continue }
            if let string = value["stringValue"] as? String {
                result[key] = string
            } else if let number = value["intValue"] {
                result[key] = "\(number)"
            }
        }
        return result
    }

    private static func logRecords(in object: [String: Any]) -> [LogRecord] {
        var records: [LogRecord] = []
        for resource in object["resourceLogs"] as? [[String: Any]] ?? [] {
            for scope in resource["scopeLogs"] as? [[String: Any]] ?? [] {
                for record in scope["logRecords"] as? [[String: Any]] ?? [] {
                    let body = (record["body"] as? [String: Any])?["stringValue"] as? String ?? ""
                    records.append(
                        LogRecord(
                            body: body,
                            attributes: Self.attributes(record["attributes"]),
                            traceID: record["traceId"] as? String,
                            spanID: record["spanId"] as? String,
                            timeUnixNano: record["timeUnixNano"] as? String
                        )
                    )
                }
            }
        }
        return records
    }

    private static func spans(in object: [String: Any]) -> [Span] {
        var spans: [Span] = []
        for resource in object["resourceSpans"] as? [[String: Any]] ?? [] {
            let resourceAttributes = Self.attributes((resource["resource"] as? [String: Any])?["attributes"])
            for scope in resource["scopeSpans"] as? [[String: Any]] ?? [] {
                for span in scope["spans"] as? [[String: Any]] ?? [] {
                    let links = (span["links"] as? [[String: Any]] ?? []).map { link in
                        (traceID: Self.hex(link["traceId"]), spanID: Self.hex(link["spanId"]))
                    }
                    spans.append(
                        Span(
                            name: span["name"] as? String ?? "",
                            traceID: Self.hex(span["traceId"]),
                            spanID: Self.hex(span["spanId"]),
                            parentSpanID: Self.hex(span["parentSpanId"]),
                            links: links,
                            serviceName: resourceAttributes["service.name"]
                        )
                    )
                }
            }
        }
        return spans
    }

    /// OTLP/JSON carries trace and span ids as hex strings (the spec's exception to protobuf's JSON mapping);
    /// some encoders use base64 — both are turned into lower-case hex here.
    private static func hex(_ value: Any?) -> String {
        guard let text = value as? String, !text.isEmpty else { return "" }
        if text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || ($0 >= 0x41 && $0 <= 0x46) }), text.count == 32 || text.count == 16 {
            return text.lowercased()
        }
        guard let data = Data(base64Encoded: text) else { return text }
        return data.map { String(format: "%02x", $0) }.joined()
    }
}
