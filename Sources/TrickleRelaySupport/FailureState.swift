/// A failure state as a small state machine: started → ongoing → cleared (STYLE §6).
///
/// Each call says what to log, so a state that lasts an hour logs one warning when it starts, one line per
/// interval while it lasts (with the count), and one line when it clears — never one line per failure.
public struct FailureState<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// What the caller should log.
    public enum Action: Sendable, Equatable {
        /// Nothing: the state is unchanged, or its last report is recent.
        case none
        /// The failure state began (warning).
        case started
        /// It goes on: `failures` so far, for `duration` (warning, at most once per interval).
        case ongoing(failures: Int, duration: Duration)
        /// It ended after `failures` failures over `duration` (info).
        case cleared(failures: Int, duration: Duration)
    }

    /// The shortest time between two `ongoing` reports.
    public let interval: Duration
    private var since: Instant?
    private var lastReport: Instant?
    private var failures = 0

    /// Creates a state machine in the "healthy" state.
    public init(interval: Duration = .seconds(30)) {
        self.interval = interval
    }

    /// Whether the failure state holds now.
    public var isFailing: Bool { self.since != nil }

    /// Failures counted in the current failure state (0 when healthy).
    public var currentFailures: Int { self.failures }

    /// Notes one failure.
    public mutating func failed(at now: Instant) -> Action {
        self.failures = self.failures < Int.max ? self.failures + 1 : Int.max
        guard let since = self.since, let lastReport = self.lastReport else {
            self.since = now
            self.lastReport = now
            return .started
        }
        guard lastReport.duration(to: now) >= self.interval else { return .none }
        self.lastReport = now
        return .ongoing(failures: self.failures, duration: since.duration(to: now))
    }

    /// Notes a success: clears the failure state if it held.
    public mutating func succeeded(at now: Instant) -> Action {
        guard let since = self.since else { return .none }
        let action = Action.cleared(failures: self.failures, duration: since.duration(to: now))
        self.since = nil
        self.lastReport = nil
        self.failures = 0
        return action
    }
}
