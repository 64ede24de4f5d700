import Foundation
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

    @Test("a non-loopback serve with a token file starts; /healthz answers; the token never reaches the log")
    func tokenFile() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("serve-token-\(UUID().uuidString)").path
        try "tok-123456789\n".write(toFile: file, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = try trickleRelayExecutable()
        process.arguments = ["serve", "--host", "0.0.0.0", "--port", "0", "--token-file", file, "--log-level", "debug"]
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
