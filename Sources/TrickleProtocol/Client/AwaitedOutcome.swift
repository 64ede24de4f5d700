import NIOCore
import Synchronization
import TrickleRelaySupport

/// The outcome of work running in another task, awaited with a timeout: the waiting task wakes when the outcome
/// is in or when the time is up, whichever comes first, and can then do something else (check on the work) and
/// wait again.
///
/// On a clock with event-loop timers (``RelayClock/timerEventLoops``, the default for subscribers) the timeout is
/// one scheduled task on a loop: no task sleeps beside the work. A subscriber following a segment is then one
/// task for the request, its caller watching for a stall — not a second task per followed channel for the
/// watchdog (10,000 channels: ~28 MiB less). Any other clock (a test's manual clock) sleeps in a task raced
/// against the outcome.
final class AwaitedOutcome<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var waiter: (id: UInt64, continuation: CheckedContinuation<Void, Never>)?
        var timer: Scheduled<Void>?
        var nextWaiterID: UInt64 = 0
    }

    private let state = RelayMutex(State())

    /// The outcome, once in.
    var value: Value? { self.state.withLock { $0.value } }

    /// Hands the outcome in (later calls are ignored) and wakes the waiter.
    func fulfill(_ value: Value) {
        let (waiter, timer): (CheckedContinuation<Void, Never>?, Scheduled<Void>?) = self.state.withLock { state in
            guard state.value == nil else { return (nil, nil) }
            state.value = value
            defer {
                state.waiter = nil
                state.timer = nil
            }
            return (state.waiter?.continuation, state.timer)
        }
        timer?.cancel()
        waiter?.resume()
    }

    /// Waits until the outcome is in, `duration` of `clock`'s time passed (`nil`: no time limit), or the task is
    /// cancelled; returns the outcome if it is in.
    func wait(upTo duration: Duration?, clock: RelayClock) async -> Value? {
        if let value = self.value { return value }
        guard let duration else {
            await self.wait(timer: nil)
            return self.value
        }
        guard let loops = clock.timerEventLoops else {
            await untilFirst({ await self.wait(timer: nil) }, { try? await clock.sleep(for: duration) })
            return self.value
        }
        await self.wait(timer: (loops.any(), TimeAmount(max(duration, .zero))))
        return self.value
    }

    /// Waits for the outcome (or cancellation), and with `timer` for that long at most.
    private func wait(timer: (loop: any EventLoop, delay: TimeAmount)?) async {
        let id = self.state.withLock { state -> UInt64 in
            state.nextWaiterID &+= 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let isReady = self.state.withLock { state -> Bool in
                    if state.value != nil || Task.isCancelled { return true }
                    state.waiter = (id, continuation)
                    return false
                }
                if isReady {
                    continuation.resume()
                    return
                }
                guard let timer else { return }
                let scheduled = timer.loop.scheduleTask(in: timer.delay) { self.resumeWaiter(id: id) }
                let isStale = self.state.withLock { state -> Bool in
                    guard state.waiter?.id == id else { return true }
                    state.timer = scheduled
                    return false
                }
                if isStale { scheduled.cancel() }
            }
        } onCancel: {
            self.resumeWaiter(id: id)
        }
    }

    /// Resumes the waiter `id` if it still waits (a timer of an earlier wait finds another waiter, or none).
    private func resumeWaiter(id: UInt64) {
        let (waiter, timer): (CheckedContinuation<Void, Never>?, Scheduled<Void>?) = self.state.withLock { state in
            guard let waiter = state.waiter, waiter.id == id else { return (nil, nil) }
            defer {
                state.waiter = nil
                state.timer = nil
            }
            return (waiter.continuation, state.timer)
        }
        timer?.cancel()
        waiter?.resume()
    }
}
