import Foundation
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

@Suite("Outputs that go away, secret files and startup failures: one rule for every command", .timeLimit(.minutes(1)))
struct OutputAndSecretsProcessTests {
    @Test("subscribe whose reader went away (| head -n 1): ends quietly with exit 0, no trap, a note on stderr")
    func subscribeBrokenPipe() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            server.createChannel(named: "pipe")
            _ = try await client.send(.POST, "\(base)/pipe/0", body: "{\"type\":\"a\"}\n{\"type\":\"b\"}\n")
            let process = Process()
            process.executableURL = try trickleRelayExecutable()
            process.arguments = ["subscribe", "--url", "\(base)/pipe", "--start", "0"]
            let output = Pipe()
            let errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            let exited = try launch(process)
            // The reader goes away before the first line: every write the child makes meets EPIPE.
            try output.fileHandleForReading.close()
            async let err = readAll(errors)
            let status = await exited.wait()
            let text = await err
            #expect(status == 0, "\(text)")
            #expect(text.contains("standard output closed"), "\(text)")
            #expect(!text.contains("Fatal error"), "\(text)")
        }
    }

    @Test("replay printing its summary to a closed stdout exits normally")
    func replayBrokenPipe() async throws {
        let process = Process()
        process.executableURL = try trickleRelayExecutable()
        process.arguments = ["replay", "--sink", "null", fixturesDirectory().appendingPathComponent("clean-session.jsonl").path]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try output.fileHandleForReading.close()
        let exited = try launch(process)
        async let err = readAll(errors)
        let status = await exited.wait()
        let text = await err
        #expect(status == 0, "\(text)")
        #expect(!text.contains("Fatal error"), "\(text)")
    }

    /// A recording of `count` telemetry events, `padding` bytes of text each; removed by the caller.
    func recording(_ count: Int, padding: Int = 0) throws -> String {
        var bytes = Data()
        let text = String(repeating: "x", count: padding)
        for index in 0..<count {
            bytes += Data(#"{"type":"telemetry","event":{"id":"e-\#(index)","type":"stream_trace","timestamp":"1","data":{"type":"metric","p":"\#(text)"}}}"#.utf8) + Data([0x0A])
        }
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("stopped-reader-\(UUID().uuidString).jsonl").path
        try bytes.write(to: URL(fileURLWithPath: input))
        return input
    }

    /// Replays `count` events (`padding` bytes of text each) with `sink`, standard error into a pipe that is never
    /// read while the child runs: the kernel's 64 KiB fill, then every write to it would block. A write that waited
    /// would hold the replay for good (the suite's time limit fails the test). Returns its exit status, its summary
    /// and what standard error's pipe held.
    func replayWithStandardErrorUnread(sink: String, events count: Int, padding: Int = 0) async throws -> (status: Int32?, summary: [String: Any], errors: String) {
        let input = try self.recording(count, padding: padding)
        defer { try? FileManager.default.removeItem(atPath: input) }
        let process = Process()
        process.executableURL = try trickleRelayExecutable()
        process.arguments = ["replay", "--summary", "json", "--sink", sink, input]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let exited = try launch(process)
        async let out = readAll(output)
        let status = await exited.wait()
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(await out.utf8)) as? [String: Any])
        try? errors.fileHandleForWriting.close()
        return (status, summary, await readAll(errors))
    }

    @Test("the file sink into a pipe whose reader stops (--sink file:/dev/stderr, stderr never read): batches that do not fit are counted as not delivered (exit 5), never a hung process")
    func stoppedFileSinkReader() async throws {
        // 9 MB: past the pipe's 64 KiB and the sink's 4 MiB queue.
        let (status, summary, _) = try await self.replayWithStandardErrorUnread(sink: "file:/dev/stderr", events: 20_000, padding: 400)
        #expect(status == 5, "the sink could not take every event")
        #expect(summary["telemetry"] as? Int == 20_000)
        let failed = try #require(summary["sinkFailedEvents"] as? Int)
        #expect(failed > 5_000 && failed < 20_000, "\(failed) events not delivered")
    }

    @Test("standard error's reader stops (2>&1 | less left on its first page): the log sink's 2 MB of lines cost dropped lines, never a hung process")
    func stoppedStandardErrorReader() async throws {
        let (status, summary, text) = try await self.replayWithStandardErrorUnread(sink: "log", events: 20_000)
        #expect(status == 0)
        #expect(summary["telemetry"] as? Int == 20_000)
        // The pipe holds what fitted (its 64 KiB): whole lines, but for the one the exit cut (the child waited 2 s).
        #expect(text.utf8.count >= 60_000 && text.utf8.count < 2_000_000, "\(text.utf8.count) bytes")
        #expect(text.split(separator: "\n").dropLast().allSatisfy { $0.hasPrefix("TELEMETRY ") || $0.contains(" trickle-relay") }, "\(text.suffix(300))")
    }

    @Test("a token or key file that is missing, empty, a directory or too large is refused at start (exit 64, the file named) by serve, runner and client")
    func secretFilesRefused() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let empty = directory.appendingPathComponent("empty").path
        try "\n  \n".write(toFile: empty, atomically: true, encoding: .utf8)
        let huge = directory.appendingPathComponent("huge").path
        try String(repeating: "x", count: 1 << 20).write(toFile: huge, atomically: true, encoding: .utf8)
        let files: [(String, String)] = [
            (directory.appendingPathComponent("missing").path, "cannot be read"),
            (empty, "is empty"),
            (directory.path, "cannot be read"),
            (huge, "is larger than"),
        ]
        var environment = ProcessInfo.processInfo.environment
        for name in ["TRICKLE_RELAY_SERVER_TOKEN", "TRICKLE_RELAY_TOKEN", "TRICKLE_RELAY_STREAM_TOKEN", "TRICKLE_RELAY_METRICS_API_KEY", "SCOPE_CLOUD_API_KEY"] {
            environment[name] = nil
        }
        for (file, reason) in files {
            let commands: [[String]] = [
                ["serve", "--port", "0", "--token-file", file],
                ["runner", "--listen", "127.0.0.1:0", "--token-file", file],
                ["client", "--events-url", "http://127.0.0.1:9/x-events", "--sink", "null", "--stream-token-file", file],
                ["client", "--events-url", "http://127.0.0.1:9/x-events", "--sink", "https://metrics.example/v1", "--api-key-file", file],
            ]
            for command in commands {
                let result = try await runTrickleRelay(command, environment: environment)
                #expect(result.status == 64, "\(command) \(result.errors)")
                #expect(result.errors.contains(file) && result.errors.contains(reason), "\(command): \(result.errors)")
            }
        }
    }

    @Test("runner --listen on a port already in use exits 2 at once, naming the address (it used to run on without a listener)")
    func runnerPortInUse() async throws {
        try await withTrickleServer { (_, base, _) async throws in
            let port = try #require(base.split(separator: ":").last.map(String.init))
            let started = ContinuousClock.now
            let result = try await runTrickleRelay(["runner", "--listen", "127.0.0.1:\(port)", "--telemetry", "on"])
            #expect(result.status == 2, "\(result.errors)")
            #expect(result.errors.contains("cannot listen on 127.0.0.1:\(port)"), "\(result.errors)")
            #expect(ContinuousClock.now - started < .seconds(20))
        }
    }

    @Test("a listen address in use, a spool directory that cannot be made: each command says why in words, never the library's error text")
    func setupFailuresInWords() async throws {
        let blocker = FileManager.default.temporaryDirectory.appendingPathComponent("not-a-directory-\(UUID().uuidString)").path
        try "x".write(toFile: blocker, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: blocker) }
        @Sendable func expectNoLibraryText(_ command: String, _ errors: String) {
            #expect(!errors.contains("errno") && !errors.contains("Domain=") && !errors.contains("descriptor:"), "\(command): \(errors)")
        }
        try await withTrickleServer { (_, base, _) async throws in
            let port = try #require(base.split(separator: ":").last.map(String.init))
            let inUse = "cannot listen on 127.0.0.1:\(port): Address already in use"
            let serve = try await runTrickleRelay(["serve", "--host", "127.0.0.1", "--port", port])
            #expect(serve.status == 1 && serve.errors.contains(inUse), "\(serve.errors)")
            let client = try await runTrickleRelay(["client", "--events-url", "http://127.0.0.1:9/x-events", "--sink", "null", "--listen", "127.0.0.1:\(port)"])
            #expect(client.status == 1 && client.errors.contains(inUse) && client.errors.contains("choose another --listen address"), "\(client.errors)")
            expectNoLibraryText("serve", serve.errors)
            expectNoLibraryText("client --listen", client.errors)
        }
        for (directory, at) in [(blocker, blocker), (blocker + "/spool/deeper", blocker)] {
            let spooled = try await runTrickleRelay(
                ["client", "--events-url", "http://127.0.0.1:9/x-events", "--sink", "http://127.0.0.1:9/v1/metrics", "--spool-dir", directory, "--listen", "off"],
                environment: ["TRICKLE_RELAY_METRICS_API_KEY": "k"]
            )
            #expect(spooled.status == 2, "\(spooled.errors)")
            #expect(spooled.errors.contains("cannot create the spool directory \(directory) (\(at): exists and is not a directory)"), "\(spooled.errors)")
            expectNoLibraryText("client --spool-dir \(directory)", spooled.errors)
        }
    }
}

@Suite("The file sink when the disk fills", .timeLimit(.minutes(1)))
struct FileSinkFullDiskProcessTests {
    @Test("a file size limit mid-batch: whole records only, the failed events counted, exit 5")
    func fileSizeLimit() async throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("full-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        // prlimit (util-linux) caps the file size: a write past it fails with EFBIG, as on a full disk.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        process.arguments = ["--fsize=3000", try trickleRelayExecutable().path, "replay", "--sink", "file:\(output)", "--summary", "json",
                             fixturesDirectory().appendingPathComponent("recorded-session.jsonl").path]
        let out = Pipe()
        let errors = Pipe()
        process.standardOutput = out
        process.standardError = errors
        let exited = try launch(process)
        async let summaryText = readAll(out)
        async let errorText = readAll(errors)
        let status = await exited.wait()
        let (summary, messages) = (await summaryText, await errorText)
        #expect(status == 5, "\(messages)")
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(summary.utf8)) as? [String: Any])
        let failed = try #require(fields["sinkFailedEvents"] as? Int)
        let telemetry = try #require(fields["telemetry"] as? Int)
        #expect(failed > 0)
        // Whatever the file holds is whole records: every line parses, and together with the failed events they
        // are every telemetry event.
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(text.isEmpty || text.hasSuffix("\n"), "a torn record at the end")
        for line in lines where !line.isEmpty {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "\(line.prefix(80))")
        }
        #expect(lines.filter { !$0.isEmpty }.count + failed == telemetry)
        #expect(messages.contains("egress sink failing"), "\(messages)")
    }
}
