import Synchronization

/// A gate that tasks pass freely while open and wait at while closed.
final class PauseGate: Sendable {
    private struct State {
        var isPaused = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    init() {}

    func pause() { self.state.withLock { $0.isPaused = true } }

    func resume() {
        let waiters = self.state.withLock { state in
            state.isPaused = false
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns at once when open; otherwise waits until ``resume()``.
    func pass() async {
        guard self.state.withLock({ $0.isPaused }) else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let open = self.state.withLock { state -> Bool in
                guard state.isPaused else { return true }
                state.waiters.append(continuation)
                return false
            }
            if open { continuation.resume() }
        }
    }
}
