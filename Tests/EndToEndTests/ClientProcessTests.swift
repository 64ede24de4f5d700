import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

private func telemetryLine(_ n: Int) -> ByteBuffer {
    ByteBuffer(
        string: #"{"type":"telemetry","event":{"id":"c\#(n)","type":"stream_trace","timestamp":"1763719200\#(n)","data":{"type":"metric","n":\#(n)}}}"#
    )
}

/// Lines in a spool directory's segment files.
private func spoolLines(_ directory: String) -> Int {
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".jsonl") }
    return names.reduce(0) { count, name in
        let data = FileManager.default.contents(atPath: directory + "/" + name) ?? Data()
        return count + data.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
    }
}

@Suite("trickle-relay client as a process", .timeLimit(.minutes(2)))
struct ClientProcessTests {
    /// Starts `trickle-relay client` against `eventsURL` with the metrics sink and a spool in `spoolDirectory`.
    func startClient(eventsURL: String, metricsURL: String, spoolDirectory: String) throws -> (Process, OneShotSignal<Int32>, Pipe) {
        let process = Process()
        process.executableURL = try trickleRelayExecutable()
        process.arguments = [
            "client", "--events-url", eventsURL, "--sink", metricsURL, "--spool-dir", spoolDirectory, "--start", "0",
            "--listen", "off", "--quiet", "--log-level", "info",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["TRICKLE_RELAY_METRICS_API_KEY"] = "crash-test-key"
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        return (process, try launch(process), errors)
    }

    @Test("kill -9 mid-stream, publish while it is down, restart: the endpoint gets every relayed event (by id)")
    func crashAndResume() async throws {
        let spoolDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("crash-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: spoolDirectory) }
        let endpoint = ScriptedEndpoint { _, _ in (.ok, [:]) }
        try await endpoint.run { metricsURL in
            // Closed channels stay readable for a minute: a client slowed down (a sanitizer build on a busy machine) still
            // reads the tail after the DELETE.
            try await withTrickleServer(.init(ringSize: 16, deletedChannelGracePeriod: .seconds(60))) { (server, base, client) async throws in
                server.createChannel(named: "crash-events")
                let eventsURL = "\(base)/crash-events"
                let writer = JSONLWriter(
                    url: try TrickleChannelURL(eventsURL),
                    httpClient: client,
                    configuration: .init(segmentWindow: .milliseconds(300)),
                    logger: quietLogger
                )
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await writer.run() }

                    // 1. A client reads and delivers part of the stream, then dies without any chance to flush.
                    let (first, firstExited, firstErrors) = try self.startClient(eventsURL: eventsURL, metricsURL: metricsURL, spoolDirectory: spoolDirectory)
                    for n in 0..<1_500 {
                        try await writer.write(line: telemetryLine(n))
                        if n % 500 == 499 { await writer.flush() }  // several segments
                    }
                    try await waitUntil(timeout: .seconds(30), "the endpoint to accept a first batch") { !endpoint.acceptedIDs.isEmpty }
                    kill(first.processIdentifier, SIGKILL)
                    #expect(await firstExited.wait() == SIGKILL)
                    _ = await readAll(firstErrors)
                    let acceptedBeforeCrash = Set(endpoint.acceptedIDs).count

                    // 2. Events published while no client runs.
                    for n in 1_500..<3_000 {
                        try await writer.write(line: telemetryLine(n))
                        if n % 500 == 499 { await writer.flush() }  // several segments: "latest" alone would miss some
                    }

                    // 3. A new client on the same spool resumes, then the channel ends and it exits by itself.
                    let (_, secondExited, secondErrors) = try self.startClient(eventsURL: eventsURL, metricsURL: metricsURL, spoolDirectory: spoolDirectory)
                    for n in 3_000..<3_500 { try await writer.write(line: telemetryLine(n)) }
                    try await writer.close()
                    let status = await secondExited.wait()
                    let errors = await readAll(secondErrors)
                    #expect(status == 0, "\(errors)")
                    #expect(errors.contains("resuming from the spool's read position"), "\(errors)")
                    try await group.waitForAll()

                    let accepted = Set(endpoint.acceptedIDs)
                    let missing = (0..<3_500).map { "c\($0)" }.filter { !accepted.contains($0) }
                    #expect(
                        missing.count == 0,
                        "missing \(missing.count), e.g. \(missing.prefix(5)); accepted before the crash \(acceptedBeforeCrash); the second client said: \(errors.split(separator: "\n").suffix(12).joined(separator: " | "))"
                    )
                    #expect(accepted.count == 3_500)
                }
            }
        }
    }
}

extension ClientProcessTests {
    @Test("SIGTERM while the endpoint fails: exits 0 at once, the events wait in the spool, the next start delivers them")
    func sigtermKeepsTheSpool() async throws {
        let spoolDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("sigterm-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: spoolDirectory) }
        let failing = ScriptedEndpoint { _, _ in (.serviceUnavailable, [:]) }
        let accepting = ScriptedEndpoint { _, _ in (.ok, [:]) }
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "sigterm-events")
            let eventsURL = "\(base)/sigterm-events"
            let writer = JSONLWriter(url: try TrickleChannelURL(eventsURL), httpClient: client, logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                try await failing.run { metricsURL in
                    let (process, exited, errors) = try self.startClient(eventsURL: eventsURL, metricsURL: metricsURL, spoolDirectory: spoolDirectory)
                    for n in 0..<300 { try await writer.write(line: telemetryLine(n)) }
                    await writer.flush()
                    try await waitUntil(timeout: .seconds(30), "a failed delivery") { !failing.requests.isEmpty }
                    // Every event read and in the spool (a slow machine may still be reading when the first
                    // delivery fails).
                    try await waitUntil(timeout: .seconds(60), every: .milliseconds(20), "300 events in the spool") {
                        spoolLines(spoolDirectory) >= 300
                    }
                    let signalled = ContinuousClock.now
                    kill(process.processIdentifier, SIGTERM)
                    let status = await exited.wait()
                    let output = await readAll(errors)
                    #expect(status == 0, "\(output)")
                    #expect(ContinuousClock.now - signalled < .seconds(5), "SIGTERM must not wait for a failing endpoint")
                    #expect(output.contains("spool: appended 300"), "\(output)")
                }
                #expect(failing.acceptedIDs.isEmpty)
                try await accepting.run { metricsURL in
                    let (_, exited, errors) = try self.startClient(eventsURL: eventsURL, metricsURL: metricsURL, spoolDirectory: spoolDirectory)
                    try await writer.close()
                    let status = await exited.wait()
                    let output = await readAll(errors)
                    #expect(status == 0, "\(output)")
                }
                try await group.waitForAll()
            }
            #expect(Set(accepting.acceptedIDs) == Set((0..<300).map { "c\($0)" }))
        }
    }
}

/// Collects a pipe's lines as they arrive (on a Dispatch thread), so a test can wait for one. The signal fires at the
/// pipe's end: every line its writers wrote is in `lines` then (a process's exit alone does not say so — the
/// last lines may still be in the pipe).
@discardableResult
func collectLines(_ pipe: Pipe, into lines: Recorder<String>) -> OneShotSignal<Void> {
    let ended = OneShotSignal<Void>()
    onDedicatedThread {
        defer { ended.fulfill(()) }
        var pending = Data()
        while true {
            let data = pipe.fileHandleForReading.availableData
            if data.isEmpty { break }
            pending.append(data)
            while let newline = pending.firstIndex(of: 0x0A) {
                lines.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                pending.removeSubrange(pending.startIndex...newline)
            }
        }
    }
    return ended
}

@Suite("trickle-relay client's local endpoint", .timeLimit(.minutes(1)))
struct ClientEndpointProcessTests {
    @Test("--listen serves /healthz, token-guarded /metrics and the SSE stream; SIGHUP re-reads the key; SIGTERM exits 0")
    func endpoint() async throws {
        let tokenFile = FileManager.default.temporaryDirectory.appendingPathComponent("stream-token-\(UUID().uuidString)").path
        try Data("endpoint-secret\n".utf8).write(to: URL(fileURLWithPath: tokenFile))
        defer { try? FileManager.default.removeItem(atPath: tokenFile) }
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "endpoint-events")
            let process = Process()
            process.executableURL = try trickleRelayExecutable()
            process.arguments = [
                "client", "--events-url", "\(base)/endpoint-events", "--sink", "null", "--listen", "127.0.0.1:0",
                "--stream-token-file", tokenFile, "--quiet", "--log-level", "info",
            ]
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            let lines = Recorder<String>()
            collectLines(errors, into: lines)
            let exited = try launch(process)
            try await lines.wait("the stream URL") { $0.contains { $0.hasPrefix("SSE stream: ") } }
            let streamURL = String(try #require(lines.values.first { $0.hasPrefix("SSE stream: ") }).dropFirst("SSE stream: ".count))
            let endpoint = String(streamURL.dropLast("/telemetry/stream".count))

            let health = try await client.execute(HTTPClientRequest(url: endpoint + "/healthz"), timeout: .seconds(5))
            #expect(health.status == .ok)
            let refused = try await client.execute(HTTPClientRequest(url: endpoint + "/metrics"), timeout: .seconds(5))
            #expect(refused.status == .unauthorized)
            var metrics = HTTPClientRequest(url: endpoint + "/metrics")
            metrics.headers.add(name: "Authorization", value: "Bearer endpoint-secret")
            let answer = try await client.execute(metrics, timeout: .seconds(5))
            #expect(answer.status == .ok)
            #expect(String(buffer: try await answer.body.collect(upTo: 1 << 20)).contains("trickle_relay_client_lines_total"))

            kill(process.processIdentifier, SIGHUP)
            try await lines.wait("the SIGHUP log line") { $0.contains { $0.contains("SIGHUP") } }
            #expect(try await client.execute(HTTPClientRequest(url: endpoint + "/healthz"), timeout: .seconds(5)).status == .ok)

            kill(process.processIdentifier, SIGTERM)
            #expect(await exited.wait() == 0)
            #expect(!lines.values.contains { $0.contains("endpoint-secret") })
        }
    }

    @Test("bad client flags are refused with exit 64 and a message that says what to write instead", arguments: [
        (["--sink", "bogus"], "--sink must be log, null, file:PATH, http(s)://…, kafka:HOST:PORT[,…] or otlp:https://…"),
        (["--sink", "otlp:http://10.0.0.1:4318"], "is http:// to another machine: use https://"),
        (["--sink", "otlp:nonsense"], "--sink otlp: must be an http(s)://HOST[:PORT][/PATH] URL"),
        (["--kafka-option", "acks"], "--kafka-option must be KEY=VALUE"),
        (["--kafka-compression", "brotli"], "--kafka-compression must be none, gzip, snappy, lz4 or zstd"),
        (["--sink", "file:"], "--sink file: needs a path"),
        (["--sink", "https://metrics.example/v1"], "the metrics sink needs an API key"),
        (["--listen", "nonsense"], "--listen must be HOST:PORT"),
        (["--file-sync", "sometimes"], "The value 'sometimes' is invalid for '--file-sync <file-sync>'"),
        (["--wait-for-channel=-1"], "--wait-for-channel must be 0 to"),
        (["--spool-max-bytes", "1000"], "--spool-max-bytes must be at least 1 MiB"),
        (["--start", "yesterday"], "--start must be latest, next or a seq number"),
        (["--start", "9223372036854775807"], "--start must be latest, next or a seq number"),
        (["--events-url", "http://127.0.0.1:9/x"], "--events-url http://127.0.0.1:9/x is given twice"),
        (["--events-url", "ftp://127.0.0.1:9/y"], "events URL must be http(s)://HOST[:PORT]/[BASE/]CHANNEL, got ftp://127.0.0.1:9/y"),
        (["--config", "/nonexistent/client.json"], "configuration file /nonexistent/client.json: cannot read the file"),
        (["--wait-for-channel", "1e300"], "--wait-for-channel must be"),
    ])
    func badFlags(arguments: [String], message: String) async throws {
        var environment = ProcessInfo.processInfo.environment
        for name in ["TRICKLE_RELAY_METRICS_API_KEY", "SCOPE_CLOUD_API_KEY", "TRICKLE_RELAY_METRICS_URL", "DAYDREAM_METRICS_URL"] {
            environment[name] = nil
        }
        let (status, _, errors) = try await runTrickleRelay(
            ["client", "--events-url", "http://127.0.0.1:9/x"] + arguments,
            environment: environment
        )
        #expect(status == 64)
        #expect(errors.contains(message), "\(errors)")
    }

    @Test("a cleartext traces endpoint on another machine, or a bad header list, is refused at startup with what to do")
    func badTracingEnvironment() async throws {
        let cases: [([String: String], String)] = [
            (["TRICKLE_RELAY_OTLP_TRACES_ENDPOINT": "http://collector.example:4318"], "is http:// to another machine: use https://"),
            (["TRICKLE_RELAY_OTLP_TRACES_ENDPOINT": "https://collector.example", "TRICKLE_RELAY_OTLP_TRACES_HEADERS": "s3cr3t"], "must be key=value"),
            (["TRICKLE_RELAY_OTLP_TRACES_ENDPOINT": "https://collector.example", "TRICKLE_RELAY_OTLP_TRACES_SAMPLER": "sometimes"], "TRICKLE_RELAY_OTLP_TRACES_SAMPLER must be"),
            (["TRICKLE_RELAY_OTLP_LOGS_HEADERS": "=x"], "TRICKLE_RELAY_OTLP_LOGS_HEADERS must be key=value"),
            ([:], "--otel-global needs a traces endpoint"),
        ]
        for (variables, message) in cases {
            var environment = ProcessInfo.processInfo.environment
            environment.merge(variables) { $1 }
            let global = variables.isEmpty ? ["--otel-global"] : []
            for command in [["client", "--events-url", "http://127.0.0.1:9/x", "--sink", "null"], ["runner", "--events-url", "http://127.0.0.1:9/x-events", "--session-id", "s"]]
            where !(command[0] == "runner" && variables["TRICKLE_RELAY_OTLP_LOGS_HEADERS"] != nil) {
                let (status, _, errors) = try await runTrickleRelay(command + global, environment: environment)
                #expect(status == 64, "\(command[0]) \(variables)")
                #expect(errors.contains(message), "\(errors)")
                #expect(!errors.contains("s3cr3t"))
            }
        }
    }

    @Test("a channel that answers 404 before any data: exit 3 and a message naming the likely cause")
    func neverSeenChannel() async throws {
        try await withTrickleServer { (_, base, _) async throws in
            let result = try await runTrickleRelay(["client", "--events-url", "\(base)/mistyped-events", "--listen", "off", "--sink", "null"])
            #expect(result.status == 3)
            #expect(result.errors.contains("was never seen (404 before any data)"), "\(result.errors)")
        }
    }

    @Test("--version prints the VERSION file's version, the commit and the build configuration")
    func version() async throws {
        let result = try await runTrickleRelay(["--version"])
        let expected = try String(contentsOf: fixturesDirectory().deletingLastPathComponent().appendingPathComponent("VERSION"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let printed = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(result.status == 0)
        #expect(printed.hasPrefix("\(expected) (commit "), "\(printed)")
        #expect(printed.hasSuffix(", debug)") || printed.hasSuffix(", release)"), "\(printed)")
    }

    @Test("a non-loopback --listen without a token is refused at startup")
    func nonLoopbackNeedsToken() async throws {
        var environment = ProcessInfo.processInfo.environment
        environment["TRICKLE_RELAY_STREAM_TOKEN"] = nil
        let (status, _, message) = try await runTrickleRelay(
            ["client", "--events-url", "http://127.0.0.1:9/x", "--listen", "0.0.0.0:7071"],
            environment: environment
        )
        #expect(status == 64)
        #expect(message.contains("is not loopback"), "\(message)")
    }
}
