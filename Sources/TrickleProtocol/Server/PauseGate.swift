import Synchronization
import TrickleRelaySupport

/// A gate that is open or paused; what finds it paused is called back once it opens again.
final class PauseGate: Sendable {
    private struct State {
        var isPaused = false
        var observers: [@Sendable () -> Void] = []
    }

    private let state = RelayMutex(State())

    init() {}

    func pause() { self.state.withLock { $0.isPaused = true } }

    func resume() {
        let observers = self.state.withLock { state in
            state.isPaused = false
            defer { state.observers = [] }
            return state.observers
        }
        for observer in observers { observer() }
    }

    /// Whether the gate is open now; when it is not, `observer` is made and called once it opens.
    func isOpen(orObserve observer: @autoclosure () -> @Sendable () -> Void) -> Bool {
        self.state.withLock { state in
            guard state.isPaused else { return true }
            state.observers.append(observer())
            return false
        }
    }
}
