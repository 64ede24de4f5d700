public import NIOCore
import Synchronization

/// A counter that tasks can wait on: ``advance()`` bumps it and wakes every task waiting for a change.
///
/// A waiter passes the generation it last saw, so a change that happens between reading state and starting to
/// wait is never missed. Cancelled waiters return at once.
public final class GenerationSignal: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiterID = 0
    }

    private let state = RelayMutex(State())

    public init() {}

    /// The current generation.
    public var generation: UInt64 { self.state.withLock { $0.generation } }

    /// Bumps the generation and wakes every waiter.
    public func advance() {
        let waiters = self.state.withLock { state in
            state.generation &+= 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the generation differs from `seen`, or when the task is cancelled.
    public func wait(past seen: UInt64) async {
        let id = self.newWaiterID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                if !self.register(continuation, id: id, past: seen) { continuation.resume() }
            }
        } onCancel: {
            self.resumeWaiter(id: id)
        }
    }

    /// Returns once the generation differs from `seen`, after `timeout`, or when the task is cancelled —
    /// whichever comes first. The timer is one scheduled task on `loop` (no task group, no timer thread): cheap
    /// enough for thousands of waiters that mostly time out.
    ///
    /// - Returns: Whether the generation changed.
    @discardableResult
    public func wait(past seen: UInt64, timeout: TimeAmount, on loop: any EventLoop) async -> Bool {
        let id = self.newWaiterID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                guard self.register(continuation, id: id, past: seen) else {
                    continuation.resume()
                    return
                }
                // The timer resumes the waiter only if `advance()` or cancellation did not take it first.
                loop.scheduleTask(in: timeout) { self.resumeWaiter(id: id) }
            }
        } onCancel: {
            self.resumeWaiter(id: id)
        }
        return self.generation != seen
    }

    private func newWaiterID() -> Int {
        self.state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
    }

    /// Keeps `continuation` until the generation moves past `seen`; `false` when it already has (or the task
    /// is cancelled): the caller resumes it.
    private func register(_ continuation: CheckedContinuation<Void, Never>, id: Int, past seen: UInt64) -> Bool {
        self.state.withLock { state in
            if state.generation != seen || Task.isCancelled { return false }
            state.waiters[id] = continuation
            return true
        }
    }

    /// Resumes waiter `id` if it is still waiting.
    private func resumeWaiter(id: Int) {
        self.state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
    }
}
