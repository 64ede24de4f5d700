public import Logging
import Synchronization

/// Logs one failure state of a component through ``FailureState``: a warning when it starts, at most one line
/// per interval while it lasts (with the count and the last reason), one line when it clears.
///
/// ```swift
/// let unreachable = FailureLog("trickle server unreachable", logger: logger)
/// unreachable.failed(reason: "\(error)")   // first call: warning; later calls: throttled
/// unreachable.cleared()                    // info, once, with the count and the duration
/// ```
public final class FailureLog: Sendable {
    /// The state's name, the constant part of every line (e.g. `metrics endpoint failing`).
    public let name: String
    private let logger: Logger
    private let state: RelayMutex<FailureState<RelayClock.Instant>>
    private let clock: RelayClock
    private let latest = RelayMutex<Current?>(nil)

    /// The failure state while it holds, for a status page: its name, the last reason, since when (wall clock)
    /// and how many failures so far.
    public struct Current: Sendable, Hashable {
        public var name: String
        public var reason: String
        public var sinceUnixMilliseconds: Int64
        public var failures: Int
    }

    /// The failure state now, or `nil` when it does not hold.
    public var current: Current? { self.latest.withLock { $0 } }

    /// Creates the log of one failure state.
    /// - Parameters:
    ///   - interval: The shortest time between two "still failing" lines.
    ///   - clock: Where time comes from (tests pass a manual clock).
    public init(_ name: String, logger: Logger, interval: Duration = .seconds(30), clock: some Clock<Duration> = ContinuousClock()) {
        self.name = name
        self.logger = logger
        self.state = RelayMutex(FailureState(interval: interval))
        self.clock = RelayClock(clock)
    }

    /// Whether the failure state holds.
    public var isFailing: Bool { self.state.withLock { $0.isFailing } }

    /// Notes a failure; logs when the state starts and at most once per interval after.
    ///
    /// - Parameter reason: Why, for the log line (never a credential).
    public func failed(reason: String, metadata: Logger.Metadata = [:]) {
        let now = self.clock.now
        let action = self.state.withLock { $0.failed(at: now) }
        self.latest.withLock { latest in
            if latest == nil {
                latest = Current(name: self.name, reason: reason, sinceUnixMilliseconds: Int64(WallClock.unixNanoseconds() / 1_000_000), failures: 0)
            }
            latest!.reason = reason
            latest!.failures += 1
        }
        var metadata = metadata
        metadata["reason"] = "\(reason)"
        switch action {
        case .started:
            self.logger.warning("\(self.name)", metadata: metadata)
        case .ongoing(let failures, let duration):
            metadata["failures"] = "\(failures)"
            metadata["for_s"] = "\(duration.components.seconds)"
            self.logger.warning("\(self.name) (still)", metadata: metadata)
        case .none, .cleared:
            break
        }
    }

    /// Notes a success; logs once if a failure state held.
    public func cleared(metadata: Logger.Metadata = [:]) {
        let now = self.clock.now
        let action = self.state.withLock { $0.succeeded(at: now) }
        self.latest.withLock { $0 = nil }
        guard case .cleared(let failures, let duration) = action else { return }
        var metadata = metadata
        metadata["failures"] = "\(failures)"
        metadata["for_s"] = "\(duration.components.seconds)"
        self.logger.info("\(self.name): recovered", metadata: metadata)
    }
}
