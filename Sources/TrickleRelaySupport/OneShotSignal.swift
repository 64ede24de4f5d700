import Synchronization

/// A value that is set once and awaited by any number of tasks.
///
/// Waiters that are cancelled stop waiting and get `nil`.
public final class OneShotSignal<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var waiters: [Int: CheckedContinuation<Value?, Never>] = [:]
        var nextWaiterID = 0
    }

    private let state = RelayMutex(State())

    public init() {}

    /// The value, if it was set.
    public var value: Value? { self.state.withLock { $0.value } }

    /// Sets the value and wakes every waiter. Later calls are ignored.
    /// - Returns: Whether this call set the value.
    @discardableResult
    public func fulfill(_ value: Value) -> Bool {
        let waiters: [CheckedContinuation<Value?, Never>]? = self.state.withLock { state in
            guard state.value == nil else { return nil }
            state.value = value
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter.resume(returning: value) }
        return true
    }

    /// Waits for the value; returns `nil` if the waiting task is cancelled first.
    public func wait() async -> Value? {
        let id = self.state.withLock { state -> Int in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Value?, Never>) in
                let immediate: Value?? = self.state.withLock { state in
                    if let value = state.value { return .some(value) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: nil)
        }
    }
}
