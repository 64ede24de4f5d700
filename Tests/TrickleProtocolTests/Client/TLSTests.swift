import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing
@testable import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Runs the embedded server over TLS with `pair` (requiring client certificates from `clientCA` when given) and
/// hands `body` its `https://127.0.0.1:port` base, an HTTP client configured by `trust`, and a subscriber
/// configuration with the same trust that reads over its own connection (`ownConnection`) or the HTTP client.
private func withTLSServer<T: Sendable>(
    _ pair: TestCertificates.Pair,
    clientCA: String? = nil,
    trust: OutboundTLS,
    ownConnection: Bool = true,
    _ body: @Sendable (TrickleServer, String, HTTPClient, TrickleSubscriber.Configuration) async throws -> T
) async throws -> T {
    var configuration = TrickleServer.Configuration(host: "127.0.0.1", port: 0)
    if clientCA == nil {
        // Built here rather than from the files: `ServerTLS` refuses an expired certificate, and the tests need a
        // server that presents one.
        configuration.tls = ServerTLS(context: try NIOSSLContext(configuration: try pair.serverConfiguration()))
    } else {
        configuration.tls = try ServerTLS(certificatePath: pair.certificate, keyPath: pair.key, clientCertificateAuthority: clientCA)
    }
    let server = TrickleServer(configuration: configuration, logger: quietLogger)
    let tls = try trust.configuration()
    var subscriber = TrickleSubscriber.Configuration(start: .seq(0), retryBackoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(100)))
    subscriber.tls = try OutboundTLSContext(tls)
    subscriber.usesOwnConnection = ownConnection
    subscriber.channelWaitTimeout = .seconds(20)  // it may ask before the publisher's first POST created the channel
    return try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(tls: tls)) { client in
        try await withTestServer(server) { port in
            try await body(server, "https://127.0.0.1:\(port)", client, subscriber)
        }
    }
}

private let fastRetries = Backoff(initial: .milliseconds(20), maximum: .milliseconds(100))

/// A publisher from seq 0 that retries fast.
private func fastPublisher(_ url: String, _ client: HTTPClient) throws -> TricklePublisher {
    TricklePublisher(url: try TrickleChannelURL(url), httpClient: client, configuration: .init(start: .seq(0), retryBackoff: fastRetries), logger: quietLogger)
}

@Suite("TLS: trust you configure, certificate failures in words", .timeLimit(.minutes(1)))
struct TLSTests {
    @Test("trusted through --ca-file: publisher → TLS server → subscriber, byte-exact, over the subscriber's own connection and the HTTP client", arguments: [true, false])
    func trustedRoundTrip(ownConnection: Bool) async throws {
        let certificates = try await TestCertificates.shared()
        try await withTLSServer(certificates.server, trust: OutboundTLS(caFile: certificates.ca), ownConnection: ownConnection) { server, base, client, subscriberConfiguration in
            let publisher = try fastPublisher("\(base)/tls", client)
            let subscriber = TrickleSubscriber(url: try TrickleChannelURL("\(base)/tls"), httpClient: client, configuration: subscriberConfiguration, logger: quietLogger)
            let seen = Recorder<String>()
            let lines = (0..<50).map { #"{"type":"telemetry","event":{"id":"e\#($0)","data":{"v":"\u00e9\#($0)"}}}"# + "\n" }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await publisher.run() }
                group.addTask {
                    _ = try await subscriber.run { event in
                        if case .bytes(let buffer, _) = event { seen.append(String(buffer: buffer)) }
                    }
                }
                for line in lines { try await publisher.write(ByteBuffer(string: line)) }
                try await seen.wait("every byte over TLS") { $0.joined().utf8.count == lines.joined().utf8.count }
                try await publisher.close()
                try await group.next()
                try await group.next()
            }
            #expect(seen.values.joined() == lines.joined())
            #expect(publisher.stats.lastConnectionProblem == nil)
        }
    }

    @Test(
        "a certificate that is not accepted is named: not trusted, expired, another host; with the fix and no library text",
        arguments: [
            ("self-signed", ConnectionProblem.Kind.certificateNotTrusted, "--ca-file"),
            ("expired", .certificateExpired, "expired on 2020-01-02"),
            ("other host", .certificateForAnotherHost, "other.example"),
            ("system trust only", .certificateNotTrusted, "--ca-file"),
        ],
        [true, false]
    )
    func rejectedCertificate(expected: (name: String, kind: ConnectionProblem.Kind, words: String), ownConnection: Bool) async throws {
        let (name, kind, words) = expected
        let certificates = try await TestCertificates.shared()
        let pair = switch name {
        case "self-signed": certificates.selfSignedServer
        case "expired": certificates.expiredServer
        case "other host": certificates.otherHostServer
        default: certificates.server
        }
        let trust = name == "system trust only" ? OutboundTLS() : OutboundTLS(caFile: certificates.ca)
        try await withTLSServer(pair, trust: trust, ownConnection: ownConnection) { server, base, client, subscriberConfiguration in
            let publisher = try fastPublisher("\(base)/bad-cert", client)
            let subscriber = TrickleSubscriber(
                url: try TrickleChannelURL("\(base)/bad-cert"),
                httpClient: client,
                configuration: subscriberConfiguration,
                logger: quietLogger
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await publisher.run() }
                group.addTask { _ = try await subscriber.run { _ in } }
                try await publisher.write(ByteBuffer(string: "{\"type\":\"telemetry\"}\n"))
                try await waitUntil("the publisher's problem") { publisher.stats.lastConnectionProblem != nil && publisher.stats.retries >= 2 }
                try await waitUntil("the subscriber's problem") { subscriber.stats.lastConnectionProblem != nil }
                group.cancelAll()
            }
            for problem in [publisher.stats.lastConnectionProblem, subscriber.stats.lastConnectionProblem] {
                let problem = try #require(problem)
                #expect(problem.kind == kind, "\(problem)")
                #expect(problem.isCertificateProblem)
                #expect(problem.description.contains("127.0.0.1:"), "\(problem)")
                #expect(problem.description.contains(words), "\(problem)")
                #expect(!problem.description.contains("BoringSSL") && !problem.description.contains("CERTIFICATE_VERIFY_FAILED"), "\(problem)")
            }
            #expect(server.nextWrite(ofChannel: "bad-cert") == nil, "nothing reached the server")
        }
    }

    @Test("HTTP/2 where the server offers it (serve --http2, as go-livepeer): publisher and subscriber multiplexed through the HTTP client, byte-exact")
    func http2RoundTrip() async throws {
        let certificates = try await TestCertificates.shared()
        var configuration = TrickleServer.Configuration(host: "127.0.0.1", port: 0)
        configuration.tls = try ServerTLS(certificatePath: certificates.server.certificate, keyPath: certificates.server.key, offersHTTP2: true)
        let server = TrickleServer(configuration: configuration, logger: quietLogger)
        let tls = try OutboundTLS(caFile: certificates.ca).configuration()
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(tls: tls, allowsHTTP2: true)) { client in
            try await withTestServer(server) { port in
                let base = "https://127.0.0.1:\(port)"
                var subscriberConfiguration = TrickleSubscriber.Configuration(start: .seq(0), retryBackoff: fastRetries)
                subscriberConfiguration.usesOwnConnection = false
                subscriberConfiguration.channelWaitTimeout = .seconds(20)
                let publishers = try (0..<3).map { try fastPublisher("\(base)/h2-\($0)", client) }
                let subscribers = try (0..<3).map {
                    TrickleSubscriber(url: try TrickleChannelURL("\(base)/h2-\($0)"), httpClient: client, configuration: subscriberConfiguration, logger: quietLogger)
                }
                let seen = (0..<3).map { _ in Recorder<String>() }
                let lines = (0..<40).map { #"{"type":"telemetry","event":{"id":"h\#($0)","data":{"v":"\u00e9"}}}"# + "\n" }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<3 {
                        group.addTask { try await publishers[index].run() }
                        group.addTask {
                            _ = try await subscribers[index].run { event in
                                if case .bytes(let buffer, _) = event { seen[index].append(String(buffer: buffer)) }
                            }
                        }
                    }
                    for line in lines {
                        for publisher in publishers { try await publisher.write(ByteBuffer(string: line)) }
                    }
                    for index in 0..<3 {
                        try await seen[index].wait("every byte over HTTP/2") { $0.joined().utf8.count == lines.joined().utf8.count }
                    }
                    for publisher in publishers { try await publisher.close() }
                    try await group.waitForAll()
                }
                for recorder in seen { #expect(recorder.values.joined() == lines.joined()) }
                let response = try await client.execute(HTTPClientRequest(url: "\(base)/h2-0/0"), timeout: .seconds(5))
                #expect(response.version == .http2)
            }
        }
    }

    @Test("a server that accepts the connection and never answers the TLS handshake: each attempt gives up at the connect timeout, named, and is retried", arguments: [true, false])
    func silentHandshake(ownConnection: Bool) async throws {
        let silent = StalledServer()
        try await silent.run { plainBase in
            let base = "https" + plainBase.dropFirst(4)
            let configuration = TrickleHTTPClient.configuration(connectTimeout: .milliseconds(300), tls: try OutboundTLS().configuration())
            try await HTTPClient.withHTTPClient(configuration: configuration) { client in
                var subscriberConfiguration = TrickleSubscriber.Configuration(start: .seq(0), retryBackoff: fastRetries)
                subscriberConfiguration.usesOwnConnection = ownConnection
                // Its own connection times connect and handshake separately: 1 s, so that a loopback connect under a
                // loaded parallel run (it took over 300 ms once) is not what times out — the silent handshake is.
                subscriberConfiguration.connectTimeout = .seconds(1)
                let publisher = try fastPublisher("\(base)/silent", client)
                let subscriber = TrickleSubscriber(url: try TrickleChannelURL("\(base)/silent"), httpClient: client, configuration: subscriberConfiguration, logger: quietLogger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await publisher.run() }
                    group.addTask { _ = try await subscriber.run { _ in } }
                    try await publisher.write(ByteBuffer(string: "{\"type\":\"telemetry\"}\n"))
                    try await waitUntil(timeout: .seconds(50), "both give up and try again") {
                        publisher.stats.retries >= 2 && subscriber.stats.retries >= 2
                            && publisher.stats.lastConnectionProblem != nil && subscriber.stats.lastConnectionProblem != nil
                    }
                    group.cancelAll()
                }
                // AsyncHTTPClient (the publisher, and the subscriber without its own connection) runs one deadline
                // over connect and handshake: which of its two timeouts fires first depends on timing.
                for (problem, ownsConnection) in [(publisher.stats.lastConnectionProblem, false), (subscriber.stats.lastConnectionProblem, ownConnection)] {
                    let problem = try #require(problem)
                    if ownsConnection {
                        #expect(problem.kind == .tlsHandshakeTimeout, "\(problem)")
                        #expect(problem.description.contains("did not answer the TLS handshake"), "\(problem)")
                    } else {
                        #expect([.tlsHandshakeTimeout, .connectTimeout].contains(problem.kind), "\(problem)")
                    }
                }
            }
        }
        #expect(silent.connectionsAccepted >= 4, "every attempt was a new connection: none hung")
    }

    @Test("mutual TLS: a server that requires a client certificate refuses one without, in words; with --client-cert it works")
    func mutualTLS() async throws {
        let certificates = try await TestCertificates.shared()
        try await withTLSServer(certificates.server, clientCA: certificates.ca, trust: OutboundTLS(caFile: certificates.ca)) { server, base, client, _ in
            let publisher = try fastPublisher("\(base)/mtls", client)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await publisher.run() }
                try await publisher.write(ByteBuffer(string: "{\"type\":\"telemetry\"}\n"))
                try await waitUntil("the publisher's problem") { publisher.stats.lastConnectionProblem != nil && publisher.stats.retries >= 2 }
                group.cancelAll()
            }
            let problem = try #require(publisher.stats.lastConnectionProblem)
            #expect([.clientCertificateRequired, .clientCertificateRejected].contains(problem.kind), "\(problem)")
            #expect(problem.description.contains("--client-cert"), "\(problem)")
        }
        let identity = OutboundTLS(caFile: certificates.ca, clientCertificateFile: certificates.client.certificate, clientKeyFile: certificates.client.key)
        try await withTLSServer(certificates.server, clientCA: certificates.ca, trust: identity) { server, base, client, _ in
            let publisher = try fastPublisher("\(base)/mtls", client)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await publisher.run() }
                try await publisher.write(ByteBuffer(string: "{\"type\":\"telemetry\"}\n"))
                try await publisher.close()
                try await group.next()
            }
            #expect(publisher.stats.segments == 1, "\(publisher.stats)")
        }
    }

    @Test("TLS files are checked when named: missing, not PEM, expired, a key of another certificate, flags that do not go together")
    func badFiles() async throws {
        let certificates = try await TestCertificates.shared()
        let notPEM = certificates.folder + "/not-pem.txt"
        try "hello\n".write(toFile: notPEM, atomically: true, encoding: .utf8)
        let cases: [(OutboundTLS, OutboundTLS.Failure.Code, String)] = [
            (OutboundTLS(caFile: "/nonexistent/ca.pem"), .file(.unreadable), "--ca-file /nonexistent/ca.pem: cannot be read"),
            (OutboundTLS(caFile: notPEM), .file(.notPEM), "holds no PEM certificate"),
            (OutboundTLS(caOnly: true), .incomplete, "--ca-only needs --ca-file"),
            (OutboundTLS(clientCertificateFile: certificates.client.certificate), .incomplete, "--client-cert needs --client-key"),
            (
                OutboundTLS(clientCertificateFile: certificates.expiredServer.certificate, clientKeyFile: certificates.expiredServer.key),
                .file(.expired), "expired on 2020-01-02"
            ),
            (
                OutboundTLS(clientCertificateFile: certificates.client.certificate, clientKeyFile: certificates.server.key),
                .file(.keyMismatch), "is not the private key of the certificate"
            ),
            (OutboundTLS(clientCertificateFile: certificates.client.certificate, clientKeyFile: notPEM), .file(.notPEM), "no unencrypted PEM private key"),
        ]
        for (settings, code, words) in cases {
            #expect(throws: OutboundTLS.Failure.self) { try settings.configuration() }
            do {
                _ = try settings.configuration()
            } catch {
                #expect(error.code == code, "\(error)")
                #expect(error.description.contains(words), "\(error)")
            }
        }
        // A good pair and CA load.
        _ = try OutboundTLS(caFile: certificates.ca, caOnly: true, clientCertificateFile: certificates.client.certificate, clientKeyFile: certificates.client.key).configuration()
        #expect(throws: TLSFiles.Failure.self) { try ServerTLS(certificatePath: certificates.server.certificate, keyPath: certificates.client.key) }
    }

    @Test("a certificate's names are matched like a TLS client does: exact, case-insensitive, one-label wildcards")
    func nameMatching() {
        #expect(ConnectionProblem.matches(name: "localhost", host: "LOCALHOST"))
        #expect(ConnectionProblem.matches(name: "*.example.com", host: "a.example.com"))
        #expect(!ConnectionProblem.matches(name: "*.example.com", host: "a.b.example.com"))
        #expect(!ConnectionProblem.matches(name: "*.example.com", host: "example.com"))
        #expect(!ConnectionProblem.matches(name: "other.example", host: "127.0.0.1"))
    }
}
