public import Logging
import Synchronization

/// Logs reports of bad input through a ``ProblemThrottle``: the first few of each kind with their position,
/// then one line per interval with how many more were skipped, and a last line from ``flush()``.
public final class ProblemLog: Sendable {
    private let logger: Logger
    private let level: Logger.Level
    private let throttle: RelayMutex<ProblemThrottle>
    private let clock: RelayClock

    /// Creates a log for reports of bad input at `level`; its intervals are measured on `clock`.
    public init(
        logger: Logger,
        level: Logger.Level = .warning,
        throttle: ProblemThrottle = .init(),
        clock: some Clock<Duration> = ContinuousClock()
    ) {
        self.clock = RelayClock(clock)
        self.logger = logger
        self.level = level
        self.throttle = RelayMutex(throttle)
    }

    /// Reports one problem of `kind`; `message` and `metadata` are only built when the line is logged.
    public func report(
        _ kind: String,
        _ message: @autoclosure () -> Logger.Message,
        metadata: @autoclosure () -> Logger.Metadata = [:]
    ) {
        let now = self.clock.now
        switch self.throttle.withLock({ $0.note(kind, at: now) }) {
        case .detailed:
            var metadata = metadata()
            metadata["reason"] = "\(kind)"
            self.logger.log(level: self.level, message(), metadata: metadata)
        case .aggregate(let count):
            self.logger.log(level: self.level, "more input skipped", metadata: ["reason": "\(kind)", "count": "\(count)"])
        case .suppressed:
            break
        }
    }

    /// Logs what was suppressed since the last aggregated line (call once at the end).
    public func flush() {
        for (kind, count) in self.throttle.withLock({ $0.drainSuppressed() }) {
            self.logger.log(level: self.level, "more input skipped", metadata: ["reason": "\(kind)", "count": "\(count)"])
        }
    }
}
