import Foundation
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Issue #22: a runner whose trickle server stopped reading (hung orchestrator, SIGSTOPped `serve`) stops within
/// its documented bound on SIGTERM, with a summary whose counters add up; a second SIGTERM ends it at once.
@Suite("runner against a trickle server that never reads", .timeLimit(.minutes(2)))
struct StalledPeerProcessTests {
    /// Starts `runner` against `base`, feeds it telemetry (stdin stays open), waits until it has read some, sends
    /// `signals` (the second 0.3 s after the first), and returns its status, seconds from the last signal to its
    /// exit, and its standard error lines.
    ///
    /// With `standardErrorStopped`, standard error is a pipe already full that nobody reads: every write to it blocks.
    func runner(
        against server: StalledServer,
        base: String,
        signals: Int,
        flushTimeout: Int = 2,
        standardErrorStopped: Bool = false
    ) async throws -> (status: Int32, seconds: Double, errors: [String], linesLeftInPipe: Int) {
        let process = Process()
        process.executableURL = try trickleRelayExecutable()
        process.arguments = [
            "runner", "--events-url", "\(base)/stalled-events", "--session-id", "stalled", "--telemetry", "on",
            "--flush-timeout", "\(flushTimeout)", "--log-level", "info",
        ]
        let input = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        var environment = ProcessInfo.processInfo.environment
        environment["DO_NOT_TRACK"] = nil
        environment["TRICKLE_RELAY_TELEMETRY"] = nil
        process.environment = environment
        let lines = Recorder<String>()
        var errorsEnded: OneShotSignal<Void>?
        if standardErrorStopped {
            try Self.fill(errors)
        } else {
            errorsEnded = collectLines(errors, into: lines)
        }
        let exited = try launch(process)
        var batch = #"{"type":"runner_ready"}"# + "\n"
        for n in 0..<5_000 { batch += #"{"type":"telemetry","event":{"type":"metric","n":\#(n)}}"# + "\n" }
        try input.fileHandleForWriting.write(contentsOf: Data(batch.utf8))
        // The publisher connects once the first line (the control event) is on its way to a segment.
        try await waitUntil("the runner to connect to the stalled server") { server.connectionsAccepted >= 1 }
        var start = ContinuousClock.now
        kill(process.processIdentifier, SIGTERM)
        if signals > 1 {
            try? await Task.sleep(for: .milliseconds(300))  // the second signal comes while the first is being handled
            start = ContinuousClock.now  // timed from the signal that must end it
            kill(process.processIdentifier, SIGTERM)
        }
        let status = await exited.wait() ?? -1
        let elapsed = ContinuousClock.now - start
        try? input.fileHandleForWriting.close()
        // What the runner never took out of its input is still in the pipe (we hold its read end too).
        let leftover = (try? input.fileHandleForReading.readToEnd()) ?? nil
        let linesLeftInPipe = leftover.map { data in data.reduce(0) { $1 == 0x0A ? $0 + 1 : $0 } } ?? 0
        if let errorsEnded {
            try? await waitUntil(timeout: .seconds(10), "standard error to reach its end") { errorsEnded.value != nil }
        }
        return (status, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, lines.values, linesLeftInPipe)
    }

    /// Fills `pipe` to the brim (the kernel's buffer), leaving its write end blocking again: the child's first write
    /// to it blocks.
    static func fill(_ pipe: Pipe) throws {
        let descriptor = pipe.fileHandleForWriting.fileDescriptor
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 4096)
        while chunk.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) > 0 {}
        let full = errno == EAGAIN
        _ = fcntl(descriptor, F_SETFL, flags)
        try #require(full, "the pipe did not fill: errno \(errno)")
    }

    @Test("one SIGTERM: the runner exits within the flush deadline plus the close bound, and its summary adds up")
    func sigterm() async throws {
        let server = StalledServer()
        try await server.run { base in
            let result = try await self.runner(against: server, base: base, signals: 1)
            // --flush-timeout 2 + the close bound (5 s) + the /next probe's cut; unloaded it is ~6 s.
            #expect(result.seconds < 30, "took \(result.seconds) s")
            #expect(result.status == 1, "nothing was accepted: exit 1 (\(result.errors.suffix(3)))")
            let summary = try #require(result.errors.first { $0.hasPrefix("session stalled:") }, "\(result.errors.suffix(5))")
            try expectBalanced(summary, "telemetry received")
            try expectBalanced(summary, "control received")
            #expect(summary.contains("control received 1 ="), "\(summary)")
            #expect(!summary.contains("DO NOT ADD UP"), "\(summary)")
            // A stop signal ends the input: every line the runner took out of the pipe is counted (relayed,
            // dropped, …), none vanishes between the pipe and the summary — however far NIO had read ahead.
            // (A line the stop cut in two counts on both sides: its head as a skipped line, its end in the pipe.)
            let taken = try #require(Self.number(after: "input lines skipped of ", in: summary), "\(summary)")
            #expect((5_001...5_002).contains(taken + result.linesLeftInPipe), "\(taken) lines taken + \(result.linesLeftInPipe) left in the pipe, of 5001 written: \(summary)")
        }
    }

    /// The number just after `marker` in `text` (`… input lines skipped of 5001 (…`).
    static func number(after marker: String, in text: String) -> Int? {
        guard let range = text.range(of: marker) else { return nil }
        return Int(String(text[range.upperBound...].prefix { $0.isNumber }))
    }

    @Test("a second SIGTERM ends the runner at once (143), saying so")
    func secondSigterm() async throws {
        let server = StalledServer()
        try await server.run { base in
            // A 60 s flush deadline: the graceful path would take over a minute, so exiting well within it (unloaded:
            // 0.5 s) can only be the second signal's doing — as can status 143.
            let result = try await self.runner(against: server, base: base, signals: 2, flushTimeout: 60)
            #expect(result.seconds < 20, "took \(result.seconds) s")
            #expect(result.status == 143)
            #expect(result.errors.contains { $0.contains("second stop signal (SIGTERM)") }, "\(result.errors.suffix(3))")
        }
    }

    @Test("a second SIGTERM ends the runner at once (143) even when nobody reads its standard error (the pipe is full)")
    func secondSigtermStoppedStandardError() async throws {
        let server = StalledServer()
        try await server.run { base in
            // Every line the runner logs waits in its queue (a write to the full pipe would block for good); the
            // second signal's own line is left out rather than waited for.
            let result = try await self.runner(against: server, base: base, signals: 2, flushTimeout: 60, standardErrorStopped: true)
            #expect(result.seconds < 20, "took \(result.seconds) s")
            #expect(result.status == 143)
        }
    }
}

/// Checks one equation of a runner summary, `LABEL N (…) = name a + name b (…) + …;`: the right side sums to N.
func expectBalanced(_ summary: String, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let start = try #require(summary.range(of: label), "no \(label) in \(summary)", sourceLocation: sourceLocation)
    let clause = summary[start.upperBound...].prefix { $0 != ";" }
    let sides = clause.split(separator: "=", maxSplits: 1)
    try #require(sides.count == 2, "no equation in \(clause)", sourceLocation: sourceLocation)
    let total = Int(sides[0].split(separator: " ").first ?? "")
    // Every term is `name N` possibly followed by a parenthesised note; take the first number of each term.
    let terms = sides[1].split(separator: "+").compactMap { term in
        term.split(separator: " ").first { Int($0) != nil }.flatMap { Int($0) }
    }
    #expect(total != nil && terms.reduce(0, +) == total, "\(label): \(clause)", sourceLocation: sourceLocation)
}
