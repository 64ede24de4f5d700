public import NIOCore
import Synchronization

/// A sleep that is one scheduled task on an event loop: no timer thread and no hand-off through Dispatch (what
/// `Task.sleep` costs), so thousands of tasks that each wait a while — a watchdog per followed channel — are
/// cheap. Cancelling the sleeping task cancels the scheduled task and returns at once.
public enum EventLoopSleep {
    /// Sleeps for `amount` on `loop`'s timer.
    ///
    /// - Returns: `true` when the time passed, `false` when the task was cancelled first.
    public static func sleep(for amount: TimeAmount, on loop: any EventLoop) async -> Bool {
        let sleeper = Sleeper()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                guard sleeper.start(continuation) else { return }
                sleeper.armed(loop.scheduleTask(in: amount) { sleeper.finish(elapsed: true) })
            }
        } onCancel: {
            sleeper.finish(elapsed: false)
        }
    }

    private final class Sleeper: Sendable {
        private struct State {
            var continuation: CheckedContinuation<Bool, Never>?
            var timer: Scheduled<Void>?
            var isFinished = false
        }

        private let state = RelayMutex(State())

        /// Keeps the continuation; `false` (and resumed) when cancellation came first.
        func start(_ continuation: CheckedContinuation<Bool, Never>) -> Bool {
            let cancelled = self.state.withLock { state -> Bool in
                if state.isFinished || Task.isCancelled {
                    state.isFinished = true
                    return true
                }
                state.continuation = continuation
                return false
            }
            if cancelled { continuation.resume(returning: false) }
            return !cancelled
        }

        /// Keeps the timer to cancel, or cancels it when the sleep already ended.
        func armed(_ timer: Scheduled<Void>) {
            let ended = self.state.withLock { state -> Bool in
                if state.isFinished { return true }
                state.timer = timer
                return false
            }
            if ended { timer.cancel() }
        }

        /// Ends the sleep once: by the timer (`elapsed`) or by cancellation.
        func finish(elapsed: Bool) {
            let (continuation, timer) = self.state.withLock { state -> (CheckedContinuation<Bool, Never>?, Scheduled<Void>?) in
                guard !state.isFinished else { return (nil, nil) }
                state.isFinished = true
                defer {
                    state.continuation = nil
                    state.timer = nil
                }
                return (state.continuation, state.timer)
            }
            if !elapsed { timer?.cancel() }
            continuation?.resume(returning: elapsed)
        }
    }
}
