import AsyncHTTPClient
import Foundation
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

@Suite("trickle-relay serve as a process", .timeLimit(.minutes(1)))
struct ServeProcessTests {
    @Test(
        "bad serve flags exit 64 with a message that says what to do",
        arguments: [
            (["serve", "--host", "0.0.0.0"], "not loopback"),
            (["serve", "--tls-cert", "/nonexistent/cert.pem"], "--tls-cert needs --tls-key"),
            (["serve", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"], "cannot be read"),
            (["serve", "--token-file", "/nonexistent/token"], "cannot be read"),
            (["serve", "--token-for-reads"], "needs a token"),
            (["serve", "--max-channels", "0"], "--max-channels must be positive"),
            (["serve", "--idle-timeout", "99999999999"], "--idle-timeout must be"),
            (["serve", "--port", "70000"], "--port must be"),
            (["serve", "--threads", "0"], "--threads must be 1…256"),
        ]
    )
    func badFlags(arguments: [String], message: String) async throws {
        var environment = ProcessInfo.processInfo.environment
        environment["TRICKLE_RELAY_SERVER_TOKEN"] = nil
        let result = try await runTrickleRelay(arguments, environment: environment)
        #expect(result.status == 64)
        #expect(result.errors.contains(message), "\(result.errors)")
    }

    @Test("a non-loopback serve with a token but neither TLS nor --allow-plain-http is refused, saying how to fix it")
    func plainHTTPOffLoopback() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("serve-token-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "tok-123456789\n".write(toFile: file, atomically: true, encoding: .utf8)
        let result = try await runTrickleRelay(["serve", "--host", "0.0.0.0", "--port", "0", "--token-file", file])
        #expect(result.status == 64)
        #expect(result.errors.contains("--tls-cert PEM --tls-key PEM"), "\(result.errors)")
        #expect(result.errors.contains("--allow-plain-http"), "\(result.errors)")
    }

    @Test("serve over TLS: a runner that trusts the CA relays; one that does not exits 1 naming the certificate problem; a key that is not the certificate's is refused")
    func tls() async throws {
        let certificates = try await TestCertificates.shared()
        let mismatched = try await runTrickleRelay(["serve", "--port", "0", "--tls-cert", certificates.server.certificate, "--tls-key", certificates.client.key])
        #expect(mismatched.status == 64)
        #expect(mismatched.errors.contains("is not the private key of the certificate"), "\(mismatched.errors)")

        let (serve, port, exited) = try await startTLSServe(certificates.server)
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: input) }
        try (0..<3).map { #"{"type":"telemetry","event":{"type":"metric","n":\#($0)}}"# + "\n" }.joined().write(to: input, atomically: true, encoding: .utf8)
        func runner(_ extra: [String], channel: String = "tls-\(UUID().uuidString)-events") async throws -> (status: Int32, errors: String) {
            let process = Process()
            process.executableURL = try trickleRelayExecutable()
            process.arguments = [
                "runner", "--events-url", "https://127.0.0.1:\(port)/\(channel)", "--session-id", "tls", "--telemetry", "on",
                "--close-linger", "1", "--flush-timeout", "2",
            ] + extra
            process.standardInput = try FileHandle(forReadingFrom: input)
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            let exited = try launch(process)
            let text = await readAll(errors)
            return (await exited.wait() ?? -1, text)
        }
        // A client that trusts the CA through its configuration file follows the channel over TLS to a file.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tls-client-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let config = folder.appendingPathComponent("client.json")
        let output = folder.appendingPathComponent("telemetry.jsonl")
        try #"{"ca_file":"\#(certificates.ca)","sink":"file:\#(output.path)","listen":"off","wait_for_channel":30,"#
            .appending(#""subscriptions":[{"events_url":"https://127.0.0.1:\#(port)/tls-client-events","start":0}]}"#)
            .write(to: config, atomically: true, encoding: .utf8)
        let client = Process()
        client.executableURL = try trickleRelayExecutable()
        client.arguments = ["client", "--config", config.path, "--spool-dir", folder.appendingPathComponent("spool").path]
        let clientErrors = Pipe()
        client.standardError = clientErrors
        client.standardOutput = FileHandle.nullDevice
        let clientExited = try launch(client)
        let trusted = try await runner(["--ca-file", certificates.ca], channel: "tls-client-events")
        #expect(trusted.status == 0, "\(trusted.errors)")
        #expect(trusted.errors.contains("relayed 4 telemetry"), "\(trusted.errors.suffix(600))")
        // A client with a configuration file runs until stopped.
        try await waitUntil(timeout: .seconds(20), every: .milliseconds(50), "the client's file to hold the 4 envelopes") {
            ((try? String(contentsOf: output, encoding: .utf8)) ?? "").split(separator: "\n").count == 4
        }
        kill(client.processIdentifier, SIGTERM)
        let clientText = await readAll(clientErrors)
        #expect(await clientExited.wait() == 0, "\(clientText.suffix(800))")
        let badConfig = folder.appendingPathComponent("bad.json")
        try #"{"ca_file":"/nonexistent/ca.pem","sink":"null","listen":"off"}"#.write(to: badConfig, atomically: true, encoding: .utf8)
        let refused = try await runTrickleRelay(["client", "--config", badConfig.path, "--events-url", "https://127.0.0.1:\(port)/x-events"])
        #expect(refused.status == 64)
        #expect(refused.errors.contains("--ca-file /nonexistent/ca.pem: cannot be read"), "\(refused.errors)")
        let untrusted = try await runner([])
        #expect(untrusted.status == 1, "\(untrusted.errors)")
        #expect(untrusted.errors.contains("not signed by a trusted authority"), "\(untrusted.errors.suffix(800))")
        #expect(untrusted.errors.contains("pass --ca-file"))
        #expect(!untrusted.errors.contains("BoringSSL") && !untrusted.errors.contains("CERTIFICATE_VERIFY_FAILED"), "\(untrusted.errors.suffix(800))")
        #expect(untrusted.errors.contains("control received 0") || untrusted.errors.contains("= relayed 0 + lost"), "\(untrusted.errors.suffix(800))")
        kill(serve.processIdentifier, SIGTERM)
        #expect(await exited.wait() == 0)
    }

    @Test("a non-loopback serve with a token file starts; /healthz answers; the token never reaches the log")
    func tokenFile() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("serve-token-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "tok-123456789\n".write(toFile: file, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = try trickleRelayExecutable()
        process.arguments = ["serve", "--host", "0.0.0.0", "--port", "0", "--token-file", file, "--allow-plain-http", "--log-level", "debug"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        let lines = Recorder<String>()
        collectLines(errors, into: lines)
        let exited = try launch(process)
        try await lines.wait(timeout: .seconds(20), "the listening line") { $0.contains { $0.contains("trickle server listening") } }
        kill(process.processIdentifier, SIGTERM)
        #expect(await exited.wait() == 0)
        #expect(!lines.values.joined().contains("tok-123456789"))
    }
}

/// Slower than the rest of the serve tests (a subscriber backing off between TLS failures, a reload, a runner):
/// a suite of its own, with room on a slower machine.
@Suite("A client's trust, reloaded", .timeLimit(.minutes(3)))
struct ClientTrustReloadTests {
    @Test("a client that does not trust the server's certificate says why in /v1/subscriptions; SIGHUP with ca_file in its configuration file fixes it without a restart")
    func clientReloadsTrust() async throws {
        let certificates = try await TestCertificates.shared()
        let (serve, port, serveExited) = try await startTLSServe(certificates.server)
        let channel = "https://127.0.0.1:\(port)/reload-events"

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tls-reload-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let config = folder.appendingPathComponent("client.json")
        let output = folder.appendingPathComponent("telemetry.jsonl")
        func writeConfig(ca: String?) throws {
            let caField = ca.map { #""ca_file":"\#($0)","# } ?? ""
            try #"{\#(caField)"sink":"file:\#(output.path)","listen":"127.0.0.1:0","wait_for_channel":60,"subscriptions":[{"events_url":"\#(channel)","start":0}]}"#
                .write(to: config, atomically: true, encoding: .utf8)
        }
        try writeConfig(ca: nil)
        let client = Process()
        client.executableURL = try trickleRelayExecutable()
        client.arguments = ["client", "--config", config.path, "--spool-dir", folder.appendingPathComponent("spool").path]
        var environment = ProcessInfo.processInfo.environment
        environment["TRICKLE_RELAY_CA_FILE"] = nil
        client.environment = environment
        let clientErrors = Pipe()
        client.standardError = clientErrors
        client.standardOutput = FileHandle.nullDevice
        let clientLines = Recorder<String>()
        collectLines(clientErrors, into: clientLines)
        let clientExited = try launch(client)
        try await clientLines.wait(timeout: .seconds(20), "the endpoint's URL") { $0.contains { $0.contains("SSE stream: http://127.0.0.1:") } }
        let sse = try #require(clientLines.values.first { $0.contains("SSE stream: http://127.0.0.1:") })
        let apiPort = try #require(sse.firstMatch(of: /127\.0\.0\.1:(\d+)/).map { String($0.output.1) })
        try await HTTPClient.withHTTPClient { http in
            try await waitUntil(timeout: .seconds(20), every: .milliseconds(100), "the certificate problem in /v1/subscriptions") {
                let answer = try? await http.send(.GET, "http://127.0.0.1:\(apiPort)/v1/subscriptions")
                return answer?.body.contains("not signed by a trusted authority") == true && answer?.body.contains("connection_problem") == true
            }
        }
        #expect(!clientLines.values.joined().contains("CERTIFICATE_VERIFY_FAILED"))
        try writeConfig(ca: certificates.ca)
        kill(client.processIdentifier, SIGHUP)
        try await clientLines.wait(timeout: .seconds(20), "the reload") { $0.contains { $0.contains("TLS files re-read") } }
        let input = folder.appendingPathComponent("input.jsonl")
        try (0..<3).map { #"{"type":"telemetry","event":{"type":"metric","n":\#($0)}}"# + "\n" }.joined().write(to: input, atomically: true, encoding: .utf8)
        let runner = Process()
        runner.executableURL = try trickleRelayExecutable()
        runner.arguments = ["runner", "--events-url", channel, "--session-id", "reload", "--telemetry", "on", "--close-linger", "1", "--ca-file", certificates.ca]
        runner.standardInput = try FileHandle(forReadingFrom: input)
        runner.standardError = FileHandle.nullDevice
        runner.standardOutput = FileHandle.nullDevice
        #expect(await (try launch(runner)).wait() == 0)
        try await waitUntil(timeout: .seconds(30), every: .milliseconds(50), "the client's file to hold the 4 envelopes") {
            ((try? String(contentsOf: output, encoding: .utf8)) ?? "").split(separator: "\n").count == 4
        }
        kill(client.processIdentifier, SIGTERM)
        #expect(await clientExited.wait() == 0)
        kill(serve.processIdentifier, SIGTERM)
        #expect(await serveExited.wait() == 0)
    }
}

/// Starts `trickle-relay serve` over TLS with `pair` on a free port; returns the process, its port and its exit.
func startTLSServe(_ pair: TestCertificates.Pair) async throws -> (Process, String, OneShotSignal<Int32>) {
    let serve = Process()
    serve.executableURL = try trickleRelayExecutable()
    serve.arguments = ["serve", "--port", "0", "--tls-cert", pair.certificate, "--tls-key", pair.key]
    let errors = Pipe()
    serve.standardError = errors
    serve.standardOutput = FileHandle.nullDevice
    let lines = Recorder<String>()
    collectLines(errors, into: lines)
    let exited = try launch(serve)
    try await lines.wait(timeout: .seconds(20), "the listening line") { $0.contains { $0.contains("trickle.url=https://127.0.0.1:") } }
    let listening = try #require(lines.values.first { $0.contains("trickle.url=https://127.0.0.1:") })
    let port = try #require(listening.firstMatch(of: /https:\/\/127\.0\.0\.1:(\d+)/).map { String($0.output.1) })
    return (serve, port, exited)
}
