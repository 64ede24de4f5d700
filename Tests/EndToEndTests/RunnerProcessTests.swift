import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
import TrickleProtocol
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

struct MissingExecutable: Error, CustomStringConvertible {
    let description: String
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

    @Test("a bad events URL is refused at startup with a clear error")
    func badURL() async throws {
        let process = Process()
        process.executableURL = try trickleRelayExecutable()
        process.arguments = ["runner", "--events-url", "ws://host/events?jwt=secret", "--session-id", "x"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        let status = try await launch(process).wait()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status != 0)
        #expect(message.contains("events URL must be http(s)://"))
        #expect(!message.contains("secret"))
    }
}

@Suite("trickle-relay demo", .timeLimit(.minutes(1)))
struct DemoProcessTests {
    @Test("the demo runs server, runner and client in one process and ends with relayed = delivered")
    func demo() async throws {
        let process = Process()
        process.executableURL = try trickleRelayExecutable()
        process.arguments = ["demo", "--duration", "2", "--rate", "100"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        let exited = try launch(process)
        let output = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(await exited.wait() == 0)
        #expect(output.contains("relayed = delivered"), "\(output)")
        #expect(output.contains("latency p50"))
    }
}
