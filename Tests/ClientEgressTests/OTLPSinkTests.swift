import AsyncHTTPClient
import ClientEgress
import Foundation
import HTTPTypes
import InMemoryTracing
import Instrumentation
import Logging
import NIOCore
import NIOSSL
import RelayTracing
import Synchronization
import Testing
import Tracing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

private let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

private func envelope(_ id: String, traceparent: String? = nil) -> TelemetryRecord {
    let trace = traceparent.map { #","traceparent":"\#($0)","tracestate":"vendor=a1""# } ?? ""
    return TelemetryRecord(
        envelope: ByteBuffer(
            string: #"{"id":"\#(id)","type":"stream_trace","timestamp":"1763719200123","data":{"type":"pipeline_loaded","session_id":"s-1","connection_id":"c-1","note":"quote \" back\\slash é 🎉","n":1.50e3\#(trace)}}"#
        ),
        seq: 0,
        lineNumber: 1
    )
}

/// Runs an OTLP log sink (the reporter in its OTLP format) against `receiver` while `body` runs.
private func withOTLPSink(
    _ receiver: OTLPReceiver,
    tracing: DeliveryTracing = .off,
    _ body: @Sendable (MetricsReporter, String) async throws -> Void
) async throws {
    try await receiver.run { base in
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            let specification = try EgressSinkSpecification(parsing: "otlp:\(base)")
            let sink = try specification.makeSink(
                httpClient: client,
                otlp: OTLPLogOptions(headers: [("x-tenant", "t-7")], serviceName: "relay-test"),
                tracing: tracing,
                logger: quietLogger,
                logOutput: { _ in }
            )
            let reporter = try #require(sink as? MetricsReporter)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await reporter.run() }
                try await body(reporter, base)
                await reporter.shutdown()
                try await group.waitForAll()
            }
        }
    }
}

@Suite("OTLP log sink and the relay's own tracing, against a real OTLP/HTTP receiver", .serialized, .timeLimit(.minutes(1)))
struct OTLPSinkTests {
    @Test("every envelope arrives once as a log record whose body is the envelope's bytes; 503s are ridden out")
    func logRecords() async throws {
        let receiver = OTLPReceiver { _, index in index < 3 ? .serviceUnavailable : .ok }
        let records = (0..<20).map { envelope("e\($0)", traceparent: $0 == 0 ? parent : nil) }
        let stats = RelayMutex(MetricsReporter.Stats())
        try await withOTLPSink(receiver) { reporter, _ in
            try await reporter.export(records)
            try await reporter.forceFlush()
            try await waitUntil("20 log records, settled") { receiver.logRecords.count >= 20 && reporter.stats.sent == 20 }
            stats.withLock { $0 = reporter.stats }
        }
        let received = receiver.logRecords
        #expect(received.count == 20)
        #expect(received.map(\.body) == records.map { String(buffer: $0.envelope) })  // byte for byte, in order
        let first = try #require(received.first)
        #expect(first.attributes["data.type"] == "pipeline_loaded")
        #expect(first.attributes["session_id"] == "s-1")
        #expect(first.attributes["connection_id"] == "c-1")
        #expect(first.attributes["event.id"] == "e0")
        #expect(first.attributes["traceparent"] == parent)
        #expect(first.attributes["tracestate"] == "vendor=a1")
        #expect(first.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(first.spanID == "00f067aa0ba902b7")
        #expect(first.timeUnixNano == "1763719200123000000")
        #expect(received[1].traceID == nil)
        let requests = receiver.requests
        #expect(requests.prefix(3).allSatisfy { $0.status == .serviceUnavailable })
        #expect(requests.allSatisfy { $0.path == "/v1/logs" && $0.contentType == "application/json" && $0.headers["x-tenant"] == "t-7" })
        #expect(stats.withLock { $0.retries } == 3)
        #expect(stats.withLock { $0.sent } == 20)
    }

    @Test("a batch whose events share one parent carries it as traceparent when the relay does not trace")
    func traceparentWithoutTracer() async throws {
        let receiver = OTLPReceiver()
        try await withOTLPSink(receiver) { reporter, _ in
            try await reporter.export([envelope("a", traceparent: parent), envelope("b"), envelope("c", traceparent: parent)])
            try await reporter.forceFlush()
            try await waitUntil("3 log records") { receiver.logRecords.count >= 3 }
        }
        #expect(receiver.requests.first?.traceparent == parent)
    }

    @Test(
        "the relay's traces exporter over HTTPS trusts --ca-file (added to the system's roots) and presents --client-cert",
        .enabled(if: RelayTracing.isAvailable, "this build has no OTLP exporter (ThreadSanitizer builds leave swift-otel out)")
    )
    func tracesOverTLS() async throws {
        let certificates = try await TestCertificates.shared()
        let traces = OTLPReceiver()
        var server = try certificates.server.serverConfiguration()
        server.certificateVerification = .noHostnameVerification
        server.trustRoots = .file(certificates.ca)
        try await traces.run(tls: server) { base in
            #expect(base.hasPrefix("https://"))
            var configuration = RelayTracingConfiguration(
                endpoint: try OTLPEndpoint(parsing: base, signalPath: "/v1/traces", what: "test"),
                serviceName: "trickle-relay-client",
                usesJSON: true,
                exportInterval: .milliseconds(50)
            )
            configuration.caFile = certificates.ca
            configuration.clientCertificateFile = certificates.client.certificate
            configuration.clientKeyFile = certificates.client.key
            let tracing = try RelayTracing(configuration: configuration, logger: quietLogger)
            try await withTracingExporter(tracing, logger: quietLogger) {
                tracing.tracer.withSpan("trickle_relay.test.tls") { _ in }
                try await waitUntil("the span over TLS") { traces.spans.contains { $0.name == "trickle_relay.test.tls" } }
            }
        }
    }

    @Test("a trust bundle is the system's roots and the CA file, private to this user; an unreadable CA file is refused in words")
    func trustBundle() async throws {
        let certificates = try await TestCertificates.shared()
        let path = try TrustBundle.combining(caFile: certificates.ca, directory: certificates.folder)
        defer { unlink(path) }
        let bundle = try String(contentsOfFile: path, encoding: .utf8)
        let ca = try String(contentsOfFile: certificates.ca, encoding: .utf8)
        #expect(bundle.hasSuffix(ca))
        if let system = TrustBundle.systemBundlePaths.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            #expect(bundle.hasPrefix(String(try String(contentsOfFile: system, encoding: .utf8).prefix(200))))
        }
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(throws: TrustBundle.Failure.self) { try TrustBundle.combining(caFile: certificates.folder + "/missing.pem", directory: certificates.folder) }
    }

    @Test("the trust bundle is one file per trust configuration, however often a process starts: reused when it holds exactly those bytes, replaced (never followed) when it does not")
    func trustBundleReused() async throws {
        let certificates = try await TestCertificates.shared()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("trust-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Ten starts with the same CA file: one file (each start used to leave a 200 KB file of its own in /tmp).
        let paths = try (0..<10).map { _ in try TrustBundle.combining(caFile: certificates.ca, directory: directory) }
        #expect(Set(paths).count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).count == 1)
        let path = paths[0]
        #expect(path.hasPrefix("\(directory)/trickle-relay-trust-\(getuid())-") && path.hasSuffix(".pem"), "\(path)")
        let expected = try Data(contentsOf: URL(fileURLWithPath: path))
        // Used as it is (not rewritten: the same inode) when it holds exactly those bytes.
        var before = stat()
        var after = stat()
        #expect(stat(path, &before) == 0)
        #expect(try TrustBundle.combining(caFile: certificates.ca, directory: directory) == path)
        #expect(stat(path, &after) == 0 && after.st_ino == before.st_ino)

        // Another CA file: a file of its own.
        let other = directory + "/other-ca.pem"
        try (String(contentsOfFile: certificates.ca, encoding: .utf8) + "\n").write(toFile: other, atomically: true, encoding: .utf8)
        let otherPath = try TrustBundle.combining(caFile: other, directory: directory)
        #expect(otherPath != path)

        // Tampered with: rewritten whole, not trusted as it is.
        try Data("-----BEGIN CERTIFICATE-----\nnot ours\n".utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        #expect(try TrustBundle.combining(caFile: certificates.ca, directory: directory) == path)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == expected)

        // A symbolic link planted under the name: replaced by the bundle, the file it points to left alone.
        let target = directory + "/elsewhere"
        try Data("untouched".utf8).write(to: URL(fileURLWithPath: target))
        unlink(path)
        #expect(symlink(target, path) == 0)
        #expect(try TrustBundle.combining(caFile: certificates.ca, directory: directory) == path)
        var info = stat()
        #expect(lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && info.st_mode & 0o777 == 0o600)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == expected)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "untouched")
        // Nothing left behind by the rewrites: the bundles, the other CA file, the link's target.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == [path, otherPath, other, target].map { ($0 as NSString).lastPathComponent }.sorted())
    }

    @Test(
        "the delivery span is a child of the event's traceparent, exported to the relay's endpoint only, never to the global tracer",
        .enabled(if: RelayTracing.isAvailable, "this build has no OTLP exporter (ThreadSanitizer builds leave swift-otel out)")
    )
    func deliverySpans() async throws {
        // An application's own global tracer: the relay must leave it alone.
        let global = InMemoryTracer()
        InstrumentationSystem.bootstrap(global)
        let traces = OTLPReceiver()
        let logs = OTLPReceiver()
        let tracesBaseURL = RelayMutex("")
        try await traces.run { tracesBase in
            tracesBaseURL.withLock { $0 = tracesBase }
            let configuration = RelayTracingConfiguration(
                endpoint: try OTLPEndpoint(parsing: tracesBase, signalPath: "/v1/traces", what: "test"),
                serviceName: "trickle-relay-client",
                resourceAttributes: ["trickle_relay.role": "client"],
                usesJSON: true,
                exportInterval: .milliseconds(50)
            )
            let tracing = try RelayTracing(configuration: configuration, logger: quietLogger)
            try await withTracingExporter(tracing, logger: quietLogger) {
                try await withOTLPSink(logs, tracing: DeliveryTracing(tracer: tracing.tracer)) { reporter, _ in
                    try await reporter.export([envelope("one", traceparent: parent)])
                    try await reporter.forceFlush()
                    try await waitUntil("the log record") { logs.logRecords.count == 1 }
                    // Several parents in one batch: the span links them.
                    let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                    try await reporter.export([envelope("two", traceparent: parent), envelope("three", traceparent: other)])
                    try await reporter.forceFlush()
                    try await waitUntil("the log records") { logs.logRecords.count == 3 }
                }
            }
            try await waitUntil("the delivery spans") { traces.spans.filter { $0.name == "trickle_relay.otlp_logs.deliver" }.count >= 2 }
        }
        let deliveries = traces.spans.filter { $0.name == "trickle_relay.otlp_logs.deliver" }
        let child = try #require(deliveries.first { $0.parentSpanID == "00f067aa0ba902b7" })
        #expect(child.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(child.serviceName == "trickle-relay-client")
        let linking = try #require(deliveries.first { $0.links.count == 2 })
        #expect(Set(linking.links.map(\.spanID)) == ["00f067aa0ba902b7", "b7ad6b7169203331"])
        // The request continued the delivery span's context, not the event's parent directly.
        let sent = try #require(logs.requests.first?.traceparent)
        #expect(sent.contains(child.spanID) && sent.contains("4bf92f3577b34da6a3ce929d0e0e4736"))
        #expect(traces.requests.allSatisfy { $0.contentType == "application/json" })
        // None of the relay's spans, and none of its requests to the sink, reached the application's tracer. (What
        // may reach it is swift-otel's own exporter: its HTTP client takes AsyncHTTPClient's singleton
        // configuration, which traces with the global tracer of the moment — its export POSTs to the relay's
        // traces endpoint, not relay work.)
        let leaked = (global.finishedSpans.map(\.operationName) + global.activeSpans.map(\.operationName))
        #expect(!leaked.contains { $0.hasPrefix("trickle_relay") }, "\(leaked)")
        // The relay's requests to the log sink were not traced there either: only the exporter's own POSTs to
        // the traces endpoint are.
        let foreign = global.finishedSpans.filter { span in
            guard case .string(let url) = span.attributes["url.full"]?.toSpanAttribute() else { return true }
            return !url.hasPrefix(tracesBaseURL.withLock { $0 } + "/v1/traces")
        }
        #expect(foreign.isEmpty, "\(foreign.map { "\($0.operationName) \($0.attributes)" })")
    }

    @Test("endpoints: http:// only to this machine, https:// anywhere, no path means the signal's")
    func endpoints() throws {
        #expect(throws: OTLPEndpoint.Failure.self) { try OTLPEndpoint(parsing: "http://collector.example:4318", signalPath: "/v1/logs", what: "x") }
        #expect(throws: OTLPEndpoint.Failure.self) { try OTLPEndpoint(parsing: "http://127.evil.example:4318", signalPath: "/v1/logs", what: "x") }
        #expect(throws: OTLPEndpoint.Failure.self) { try OTLPEndpoint(parsing: "ftp://127.0.0.1", signalPath: "/v1/logs", what: "x") }
        #expect(throws: OTLPEndpoint.Failure.self) { try OTLPEndpoint(parsing: "nonsense", signalPath: "/v1/logs", what: "x") }
        #expect(try OTLPEndpoint(parsing: "https://collector.example:4318", signalPath: "/v1/logs", what: "x").url == "https://collector.example:4318/v1/logs")
        #expect(try OTLPEndpoint(parsing: "http://127.0.0.1:4318/custom/logs", signalPath: "/v1/logs", what: "x").url == "http://127.0.0.1:4318/custom/logs")
        #expect(try OTLPEndpoint(parsing: "http://localhost:4318/", signalPath: "/v1/traces", what: "x").url == "http://localhost:4318/v1/traces")
        do {
            _ = try EgressSinkSpecification(parsing: "otlp:http://10.1.2.3:4318")
            Issue.record("a cleartext non-loopback endpoint was accepted")
        } catch {
            #expect(error.description.contains("use https://"))
        }
        // Header lists: percent-decoded values, and a bad entry named without its (secret) value.
        #expect(try OTLPEndpoint.headers(parsing: "api-key=abc%3D%3D, x-tenant=t1", what: "h").map { "\($0.0)=\($0.1)" } == ["api-key=abc==", "x-tenant=t1"])
        do {
            _ = try OTLPEndpoint.headers(parsing: "secretvalue-without-key", what: "h")
            Issue.record("a malformed header list was accepted")
        } catch {
            #expect(error.description.contains("key=value"))
        }
    }

    @Test("the relay's tracing configuration from the environment")
    func tracingConfiguration() throws {
        #expect(try RelayTracingConfiguration.fromEnvironment([:], role: "client", hostName: "h", installsGlobally: false) == nil)
        #expect(throws: RelayTracingConfiguration.Failure.self) {
            try RelayTracingConfiguration.fromEnvironment([:], role: "client", hostName: "h", installsGlobally: true)
        }
        #expect(throws: RelayTracingConfiguration.Failure.self) {
            try RelayTracingConfiguration.fromEnvironment(["TRICKLE_RELAY_OTLP_TRACES_ENDPOINT": "http://collector:4318"], role: "client", hostName: "h", installsGlobally: false)
        }
        let configuration = try #require(
            try RelayTracingConfiguration.fromEnvironment(
                [
                    "TRICKLE_RELAY_OTLP_TRACES_ENDPOINT": "https://collector:4318",
                    "TRICKLE_RELAY_OTLP_TRACES_HEADERS": "authorization=Bearer%20t",
                    "TRICKLE_RELAY_OTLP_RESOURCE_ATTRIBUTES": "deployment.environment=prod",
                    "TRICKLE_RELAY_OTLP_TRACES_SAMPLER": "parentbased_traceidratio",
                    "TRICKLE_RELAY_OTLP_TRACES_SAMPLER_ARG": "0.25",
                ],
                role: "runner",
                hostName: "gpu-1",
                installsGlobally: false
            )
        )
        #expect(configuration.endpoint.url == "https://collector:4318/v1/traces")
        #expect(configuration.serviceName == "trickle-relay-runner")
        #expect(configuration.resourceAttributes == ["trickle_relay.role": "runner", "host.name": "gpu-1", "deployment.environment": "prod"])
        #expect(configuration.sampler == .parentBasedTraceIDRatio(0.25))
        #expect(configuration.headers.map(\.1) == ["Bearer t"])
        #expect(throws: RelayTracingConfiguration.Failure.self) {
            try RelayTracingConfiguration.fromEnvironment(
                ["TRICKLE_RELAY_OTLP_TRACES_ENDPOINT": "https://c", "TRICKLE_RELAY_OTLP_TRACES_SAMPLER": "traceidratio", "TRICKLE_RELAY_OTLP_TRACES_SAMPLER_ARG": "7"],
                role: "runner",
                hostName: "h",
                installsGlobally: false
            )
        }
    }
}
