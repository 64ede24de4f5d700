import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// The `trickle-relay` executable built next to this test bundle.
func trickleRelayExecutable() throws -> URL {
    let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidates = [products.appendingPathComponent("trickle-relay"), products.deletingLastPathComponent().appendingPathComponent("trickle-relay")]
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw MissingExecutable(description: "trickle-relay was not built next to the tests (\(products.path))")
    }
    return found
}

/// Reads a pipe to its end on a Dispatch thread: a blocking read must never hold one of the concurrency pool's
/// few threads (on 2 cores that stalls every other test).
func readAll(_ pipe: Pipe) async -> String {
    await withCheckedContinuation { continuation in
        onDedicatedThread {
            continuation.resume(returning: String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        }
    }
}

struct MissingExecutable: Error, CustomStringConvertible {
    let description: String
}

/// Runs `trickle-relay ARGUMENTS…` to its end; returns its exit status, standard output and standard error.
func runTrickleRelay(
    _ arguments: [String],
    in directory: URL? = nil,
    environment: [String: String]? = nil
) async throws -> (status: Int32, output: String, errors: String) {
    let process = Process()
    process.executableURL = try trickleRelayExecutable()
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    if let environment { process.environment = environment }
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    let exited = try launch(process)
    async let out = readAll(output)
    async let err = readAll(errors)
    return (await exited.wait() ?? -1, await out, await err)
}

/// Starts a child process; the returned signal carries its exit status (awaited without blocking a thread).
func launch(_ process: Process) throws -> OneShotSignal<Int32> {
    let exited = OneShotSignal<Int32>()
    process.terminationHandler = { exited.fulfill($0.terminationStatus) }
    try process.run()
    return exited
}

@Suite("trickle-relay runner as a process", .timeLimit(.minutes(1)))
struct RunnerProcessTests {
    @Test("SIGTERM while the runner app is still attached: the agent flushes, closes the channel, exits 0")
    func sigtermFlushes() async throws {
        let executable = try trickleRelayExecutable()
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "e2e-events")
            let seen = Recorder<String>()
            let reader = JSONLReader(
                url: try TrickleChannelURL("\(base)/e2e-events"),
                httpClient: client,
                configuration: .init(subscriber: .init(start: .seq(0))),
                logger: quietLogger
            )
            let process = Process()
            process.executableURL = executable
            process.arguments = [
                "runner", "--events-url", "\(base)/e2e-events", "--session-id", "e2e", "--telemetry", "on", "--log-level", "error",
            ]
            let input = Pipe()
            process.standardInput = input
            process.standardError = FileHandle.nullDevice
            var environment = ProcessInfo.processInfo.environment
            environment["DO_NOT_TRACK"] = nil
            environment["TRICKLE_RELAY_TELEMETRY"] = nil
            process.environment = environment
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    _ = try await reader.run { item in if case .line(let line) = item { seen.append(String(buffer: line.bytes)) } }
                }
                let exited = try launch(process)
                var lines = #"{"type":"runner_ready","runner_job_id":null}"# + "\n"
                for n in 0..<200 { lines += #"{"type":"telemetry","event":{"type":"metric","n":\#(n)}}"# + "\n" }
                input.fileHandleForWriting.write(Data(lines.utf8))
                // Keep stdin open (the runner app is alive); wait until the agent relayed what it got.
                try await seen.wait("the first lines") { $0.count >= 50 }
                kill(process.processIdentifier, SIGTERM)
                #expect(await exited.wait() == 0)
                try await group.waitForAll()  // the agent deleted the channel: the reader saw end of stream
                try? input.fileHandleForWriting.close()
            }
            #expect(seen.values.contains { $0.contains("runner_ready") })
            #expect(seen.values.count(where: { $0.contains(#""type":"metric""#) }) == 200)
        }
    }

    @Test("30,000 lines of noise on stdin: a handful of log lines, every one counted in the summary; valid lines still relayed")
    func noiseIsCountedNotFlooded() async throws {
        try await withTrickleServer { (server, base, _) async throws in
            server.createChannel(named: "noise-events")
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("noise-\(UUID().uuidString).jsonl")
            defer { try? FileManager.default.removeItem(at: file) }
            var text = ""
            for n in 0..<30_000 { text += n % 3 == 0 ? "[\(n)]\n" : "garbage \(n) {\n" }
            text += #"{"type":"telemetry","event":{"type":"metric","n":1}}"# + "\n"
            try text.write(to: file, atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = try trickleRelayExecutable()
            process.arguments = ["runner", "--events-url", "\(base)/noise-events", "--session-id", "n", "--telemetry", "on", "--close-linger", "0"]
            process.standardInput = try FileHandle(forReadingFrom: file)
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            let exited = try launch(process)
            let output = await readAll(errors)
            #expect(await exited.wait() == 0)
            let lines = output.split(separator: "\n")
            #expect(lines.count < 40, "\(lines.count) lines of stderr for 30,000 bad lines")
            #expect(output.contains("30000 input lines skipped of 30001"), "\(output.suffix(600))")
            #expect(output.contains("relayed 2 telemetry"), "\(output.suffix(600))")  // the event and relay_ready
        }
    }

    @Test("a bad events URL is refused at startup with a clear error")
    func badURL() async throws {
        let (status, _, message) = try await runTrickleRelay(["runner", "--events-url", "ws://host/events?jwt=secret", "--session-id", "x"])
        #expect(status != 0)
        #expect(message.contains("events URL must be http(s)://"))
        #expect(!message.contains("secret"))
    }
}

@Suite("trickle-relay demo", .timeLimit(.minutes(1)))
struct DemoProcessTests {
    @Test("the demo runs server, runner and client in one process and ends with relayed = delivered")
    func demo() async throws {
        let (status, _, output) = try await runTrickleRelay(["demo", "--duration", "2", "--rate", "100"])
        #expect(status == 0)
        #expect(output.contains("relayed = delivered"), "\(output)")
        #expect(output.contains("latency p50"))
    }

    @Test("the demo feeds a recorded fixture and serves its SSE stream on a printed loopback URL")
    func demoFixtureSSE() async throws {
        let (status, _, output) = try await runTrickleRelay([
            "demo", "--duration", "2", "--rate", "100", "--sse", "--fixture", fixturesDirectory().appendingPathComponent("clean-session.jsonl").path,
        ])
        #expect(status == 0, "\(output)")
        #expect(output.contains("SSE stream: http://127.0.0.1:"), "\(output)")
        #expect(output.contains("relayed = delivered"), "\(output)")
        #expect(output.contains("control events to local consumers"))
    }
}

/// The repository's fixtures folder.
func fixturesDirectory() -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures")
}

@Suite("trickle-relay replay", .timeLimit(.minutes(1)))
struct ReplayProcessTests {
    private func replay(_ arguments: [String]) async throws -> (status: Int32, output: String, errors: String) {
        try await runTrickleRelay(["replay"] + arguments, in: fixturesDirectory())
    }

    private func summary(_ json: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    @Test("every fixture replays with the expected summary")
    func fixtures() async throws {
        let recorded = try await self.replay(["--summary", "json", "--sink", "null", "recorded-session.jsonl"])
        #expect(recorded.status == 0)
        let clean = try self.summary(recorded.output)
        #expect(clean["lines"] as? Int == 18)
        #expect(clean["telemetry"] as? Int == 11)
        #expect((clean["byDataType"] as? [String: Int])?["stream_heartbeat"] == 2)
        #expect((clean["problems"] as? [Any])?.isEmpty == true)
        #expect((clean["duplicateIDs"] as? [Any])?.isEmpty == true)

        let split = try await self.replay(["--summary", "json", "--sink", "null", "split-session/segment-0.jsonl", "split-session/segment-1.jsonl"])
        let splitSummary = try self.summary(split.output)
        #expect(splitSummary["telemetry"] as? Int == 11)
        #expect(splitSummary["lines"] as? Int == 18)

        let bad = try await self.replay(["--summary", "json", "--sink", "null", "--max-line-bytes", "65536", "malformed-session.jsonl"])
        #expect(bad.status == 0)
        let badSummary = try self.summary(bad.output)
        let problems = try #require(badSummary["problems"] as? [[String: Any]])
        #expect(problems.map { "\($0["file"]!):\($0["line"] ?? "-") \($0["reason"]!)" } == [
            "malformed-session.jsonl:3 malformed_json",
            "malformed-session.jsonl:4 malformed_json",
            "malformed-session.jsonl:5 not_an_object",
            "malformed-session.jsonl:6 telemetry_without_object_event",
            "malformed-session.jsonl:7 line_too_large",
            "malformed-session.jsonl:10 truncated_line",  // the unterminated last line: cut short, and said so
        ])
        #expect(badSummary["oversize"] as? Int == 1)
        #expect(badSummary["duplicateIDs"] as? [String] == ["5d0b8f0e-1111-4c1e-9d0a-000000000002"])
        #expect(badSummary["telemetry"] as? Int == 3)

        let dropped = try self.summary(try await self.replay(["--summary", "json", "--sink", "null", "dropped-session.jsonl"]).output)
        #expect((dropped["byDataType"] as? [String: Int])?["telemetry_dropped"] == 2)
        #expect(dropped["telemetry"] as? Int == 11)
        #expect(dropped["spanMilliseconds"] == nil)  // computed, not stored: check the timestamps instead
        #expect((dropped["lastTimestamp"] as? Int64 ?? 0) - (dropped["firstTimestamp"] as? Int64 ?? 0) == 1000)
    }

    @Test("--to republishes a recording's valid lines onto a live channel; --speed paces by envelope timestamps")
    func republishAndPace() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "again")
            let result = try await self.replay(["--to", "\(base)/again", "malformed-session.jsonl"])
            #expect(result.status == 0)
            #expect(result.errors.contains("republished 6 lines"))
            let seen = Recorder<String>()
            // The replay deleted the channel when it ended: a 404 after its segments is the end (no reconnect grace,
            // which would wait 30 s for a server restart), and the whole read is bounded.
            let reader = JSONLReader(
                url: try TrickleChannelURL("\(base)/again"),
                httpClient: client,
                configuration: .init(subscriber: .init(start: .seq(0), reconnectGrace: .zero)),
                logger: quietLogger
            )
            let ended = "(end of the channel)"
            let reading = Task {
                _ = try await reader.run { item in if case .line(let line) = item { seen.append(String(buffer: line.bytes)) } }
                seen.append(ended)
            }
            defer { reading.cancel() }
            try await seen.wait(timeout: .seconds(20), "the republished lines and the channel's end") { $0.last == ended }
            #expect(seen.values.dropLast().count == 6, "\(seen.values)")
            #expect(seen.values.first == #"{"type":"runner_ready","runner_job_id":"job-bad"}"#)
        }
        // The recorded session spans 16.5 s of envelope time: at 20× it takes about 0.8 s, at max speed far less.
        let started = ContinuousClock.now
        #expect(try await self.replay(["--speed", "20", "--sink", "null", "recorded-session.jsonl"]).status == 0)
        #expect(ContinuousClock.now - started >= .milliseconds(700))
        #expect(try await self.replay(["--speed", "fast", "recorded-session.jsonl"]).status == 64)
    }

    @Test("--strict stops at the first malformed line, names it, and exits 3; a missing file exits 4")
    func strict() async throws {
        let result = try await self.replay(["--strict", "--sink", "null", "malformed-session.jsonl"])
        #expect(result.status == 3)
        #expect(result.errors.contains("malformed-session.jsonl:3: malformed_json"))
        #expect(try await self.replay(["--sink", "null", "no-such-file.jsonl"]).status == 4)
    }
}
