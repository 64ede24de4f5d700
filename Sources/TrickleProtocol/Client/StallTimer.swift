import NIOCore
import Synchronization
import TrickleRelaySupport

/// Watches work that runs in the caller's own task — a segment GET read by the reading task itself — for a stall,
/// with no task beside it while nothing is wrong: an event-loop timer fires when a check is due, and only then is a
/// task started for the check (once per stall timeout on a quiet channel). The check either decides an outcome —
/// `decided` then runs, to end the work (close its connection) — or says when to check again.
///
/// Whoever runs the work calls ``finish()`` once it returned, however it returned, and takes the decided outcome
/// over the work's own result. After ``finish()`` nothing is decided and `decided` does not run.
final class StallTimer<Outcome: Sendable>: Sendable {
    /// What a check found.
    enum Verdict: Sendable {
        case decided(Outcome)
        case checkAgain(in: Duration)
    }

    private struct State {
        var outcome: Outcome?
        var isFinished = false
        var timer: Scheduled<Void>?
        var check: Task<Void, Never>?
    }

    private let state = RelayMutex(State())
    private let loop: any EventLoop
    private let check: @Sendable () async -> Verdict
    private let decided: @Sendable () -> Void

    /// Starts watching: the first check runs `delay` from now.
    init(loop: any EventLoop, firstCheckIn delay: Duration, check: @escaping @Sendable () async -> Verdict, decided: @escaping @Sendable () -> Void) {
        self.loop = loop
        self.check = check
        self.decided = decided
        self.schedule(in: delay)
    }

    /// Stops watching (cancels a pending timer or a check in progress) and returns the outcome, if one was decided.
    func finish() -> Outcome? {
        let (outcome, timer, check) = self.state.withLock { state in
            state.isFinished = true
            defer {
                state.timer = nil
                state.check = nil
            }
            return (state.outcome, state.timer, state.check)
        }
        timer?.cancel()
        check?.cancel()
        return outcome
    }

    private func schedule(in delay: Duration) {
        let scheduled = self.loop.scheduleTask(in: TimeAmount(max(delay, .zero))) { self.fire() }
        let isFinished = self.state.withLock { state in
            if !state.isFinished { state.timer = scheduled }
            return state.isFinished
        }
        if isFinished { scheduled.cancel() }
    }

    private func fire() {
        self.state.withLock { state in
            guard !state.isFinished else { return }
            state.timer = nil
            state.check = Task { await self.runCheck() }
        }
    }

    private func runCheck() async {
        switch await self.check() {
        case .decided(let outcome):
            // Under the lock: once ``finish()`` has run, the work is over and must not be ended (its connection may
            // already carry the next GET).
            self.state.withLock { state in
                guard !state.isFinished else { return }
                state.outcome = outcome
                state.check = nil
                self.decided()
            }
        case .checkAgain(let delay):
            let isFinished = self.state.withLock { state in
                if !state.isFinished { state.check = nil }
                return state.isFinished
            }
            if !isFinished { self.schedule(in: delay) }
        }
    }
}
