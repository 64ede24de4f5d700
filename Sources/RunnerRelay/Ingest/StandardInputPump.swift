public import Logging
import NIOCore
public import ServiceLifecycle
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// Feeds standard input into the session, then ends (which shuts the group down gracefully).
public struct StandardInputPump: Service, CustomStringConvertible {
    public let relay: SessionRelay
    public let logger: Logger
    /// Receives the input's counts when it ends (or is stopped).
    public let onEnd: @Sendable (LineIngest.Counts) -> Void

    public init(relay: SessionRelay, logger: Logger, onEnd: @escaping @Sendable (LineIngest.Counts) -> Void) {
        self.relay = relay
        self.logger = logger
        self.onEnd = onEnd
    }

    public var description: String { "StandardInputPump" }

    /// How long the input may take to hand over what was already read once a stop signal ended it.
    static let stopGrace: Duration = .seconds(1)

    public func run() async throws {
        // Bad input is counted always and logged through a throttle: the first few of each kind with their line
        // number, then one line per interval with the count (100 MB of noise is a handful of lines, not 400,000).
        let problems = ProblemLog(logger: self.logger)
        defer { problems.flush() }
        let counted = RelayMutex(LineIngest.Counts())
        defer { self.onEnd(counted.withLock { $0 }) }
        // SIGTERM ends the input, like its end: reading stops, and the lines already read from the pipe (NIO reads
        // ahead of the parser) are still ingested and counted — none is dropped uncounted. Should the input not
        // end within a second of being stopped, the reading is cancelled instead.
        let stopper = InputStopper()
        let relay = self.relay
        let ingest = Task {
            try await withStoppableStandardInput { input, stop in
                stopper.install(stop)
                return try await LineIngest().run(
                    input,
                    into: relay.sink,
                    onProblem: { problem in
                        problems.report(problem.kind, "input line skipped", metadata: ["line": "\(problem.lineNumber)", "detail": "\(problem.reason)"])
                    },
                    onCounts: { counts in counted.withLock { $0 = counts } }
                )
            }
        }
        do {
            let counts = try await withTaskCancellationHandler {
                try await withGracefulShutdownHandler {
                    try await ingest.value
                } onGracefulShutdown: {
                    stopper.stop()
                    Task {
                        try? await Task.sleep(for: Self.stopGrace)
                        ingest.cancel()
                    }
                }
            } onCancel: {
                ingest.cancel()
            }
            counted.withLock { $0 = counts }
            self.logger.debug("input ended", metadata: ["lines": "\(counts.lines)", "invalid": "\(counts.invalid + counts.oversize)"])
        } catch is CancellationError {
            // Stopped and the input did not end in time, or the group was cancelled: the relay flushes what it has.
        } catch let error as ChannelError where error == .inputClosed || error == .eof {
            // The pipe closed under us: same as end of input.
        }
    }
}

/// Holds the input's stop function once reading started; a stop asked for earlier is applied as it arrives.
private final class InputStopper: Sendable {
    private let state = RelayMutex<(stop: (@Sendable () -> Void)?, requested: Bool)>((nil, false))

    func install(_ stop: @escaping @Sendable () -> Void) {
        let requested = self.state.withLock { state in
            state.stop = stop
            return state.requested
        }
        if requested { stop() }
    }

    func stop() {
        let stop = self.state.withLock { state in
            state.requested = true
            return state.stop
        }
        stop?()
    }
}
