import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import Testing
import TrickleProtocol
import TrickleTestSupport

private func telemetryLine(_ n: Int) -> ByteBuffer {
    ByteBuffer(
        string: #"{"type":"telemetry","event":{"id":"c\#(n)","type":"stream_trace","timestamp":"1763719200\#(n)","data":{"type":"metric","n":\#(n)}}}"#
    )
}

@Suite("trickle-relay client as a process", .timeLimit(.minutes(2)))
struct ClientProcessTests {
    /// Starts `trickle-relay client` against `eventsURL` with the metrics sink and a spool in `spoolDirectory`.
    private func startClient(eventsURL: String, metricsURL: String, spoolDirectory: String) throws -> (Process, OneShotSignal<Int32>, Pipe) {
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
            try await withTrickleServer(.init(ringSize: 16)) { (server, base, client) async throws in
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
                    #expect(missing.isEmpty, "missing \(missing.count), e.g. \(missing.prefix(5)); accepted before the crash \(acceptedBeforeCrash)")
                    #expect(accepted.count == 3_500)
                }
            }
        }
    }
}
