import AsyncHTTPClient
import NIOHTTP1
import Foundation
import Synchronization
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// A `trickle-relay` child process of the fault suite: its standard error lines, and its peak resident memory
/// sampled from `/proc` while it runs.
final class FaultChild: Sendable {
    let process: Process
    let exited: OneShotSignal<Int32>
    let lines = Recorder<String>()
    private let peakRSS = RelayMutex(0)

    init(_ arguments: [String], environment: [String: String] = [:], input: Pipe? = nil, output: Pipe? = nil) throws {
        let process = Process()
        process.executableURL = try trickleRelayExecutable()
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        for name in ["DO_NOT_TRACK", "TRICKLE_RELAY_TELEMETRY", "TRICKLE_RELAY_METRICS_API_KEY", "TRICKLE_RELAY_METRICS_URL"] { merged[name] = nil }
        for (name, value) in environment { merged[name] = value }
        process.environment = merged
        process.standardInput = input ?? FileHandle.nullDevice
        process.standardOutput = output ?? FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        self.process = process
        collectLines(errors, into: self.lines)
        self.exited = try launch(process)
    }

    /// Starts a child that serves HTTP and waits until `healthURL` answers 200.
    static func started(_ arguments: [String], environment: [String: String] = [:], healthURL: String) async throws -> FaultChild {
        let child = try FaultChild(arguments, environment: environment)
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            try await waitUntil(timeout: .seconds(30), "\(arguments.first ?? "") to answer \(healthURL)") {
                if !child.process.isRunning { throw ChildExited(arguments: arguments, lines: child.lines.values) }
                return (try? await client.send(.GET, healthURL).status) == 200
            }
        }
        return child
    }

    /// Starts a child that serves HTTP on a port picked here: `arguments(port)`, ready once
    /// `http://127.0.0.1:PORT{healthPath}` answers 200. A port is free when picked but may be taken by the time the
    /// child binds it (a connection of another test, another test process): a child that exits with "Address
    /// already in use" is started again on another port, up to five times.
    static func startedOnUnusedPort(
        environment: [String: String] = [:],
        healthPath: String = "/healthz",
        _ arguments: (Int) -> [String]
    ) async throws -> (child: FaultChild, port: Int) {
        var attempts = 0
        while true {
            attempts += 1
            let reserved = try PortReservation()
            let port = reserved.port
            reserved.release()  // just before the child binds it
            do {
                let child = try await Self.started(arguments(port), environment: environment, healthURL: "http://127.0.0.1:\(port)\(healthPath)")
                return (child, port)
            } catch let exited as ChildExited where attempts < 5 && exited.lines.contains(where: { $0.contains("Address already in use") }) {
                continue
            }
        }
    }

    var pid: Int32 { self.process.processIdentifier }
    var peakRSSBytes: Int { self.peakRSS.withLock { $0 } }

    /// Reads the current resident set size (VmRSS) and keeps the peak.
    func sampleRSS() {
        guard let status = try? String(contentsOfFile: "/proc/\(self.pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return }
        self.peakRSS.withLock { $0 = max($0, kilobytes * 1024) }
    }

    func signal(_ number: Int32) { kill(self.pid, number) }

    /// Kills the process if it still runs (a scenario that failed must not leave servers behind).
    func stopIfRunning() {
        if self.process.isRunning { kill(self.pid, SIGKILL) }
    }
}

/// A child that ended before it was ready.
struct ChildExited: Error, CustomStringConvertible {
    let arguments: [String]
    let lines: [String]
    var description: String { "trickle-relay \(self.arguments.joined(separator: " ")) exited early: \(self.lines.suffix(5).joined(separator: " | "))" }
}

/// Samples the memory of `children` every 100 ms until cancelled (a measurement, not a synchronisation).
func sampleMemory(of children: @escaping @Sendable () -> [FaultChild]) async {
    while !Task.isCancelled {
        for child in children() { child.sampleRSS() }
        try? await Task.sleep(for: .milliseconds(100))
    }
}
