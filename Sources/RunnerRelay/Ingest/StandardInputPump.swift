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

    public func run() async throws {
        // Bad input is counted always and logged through a throttle: the first few of each kind with their line
        // number, then one line per interval with the count (100 MB of noise is a handful of lines, not 400,000).
        let problems = ProblemLog(logger: self.logger)
        defer { problems.flush() }
        let counted = RelayMutex(LineIngest.Counts())
        defer { self.onEnd(counted.withLock { $0 }) }
        do {
            let counts = try await cancelWhenGracefulShutdown {
                try await withStandardInput { input in
                    try await LineIngest().run(
                        input,
                        into: self.relay.sink,
                        onProblem: { problem in
                            problems.report(problem.kind, "input line skipped", metadata: ["line": "\(problem.lineNumber)", "detail": "\(problem.reason)"])
                        },
                        onCounts: { counts in counted.withLock { $0 = counts } }
                    )
                }
            }
            counted.withLock { $0 = counts }
            self.logger.debug("input ended", metadata: ["lines": "\(counts.lines)", "invalid": "\(counts.invalid + counts.oversize)"])
        } catch is CancellationError {
            // SIGTERM while reading: stop here; the relay flushes what it has.
        } catch let error as ChannelError where error == .inputClosed || error == .eof {
            // The pipe closed under us: same as end of input.
        }
    }
}
