import Synchronization
import TrickleRelaySupport

/// Collects values from concurrent producers and lets a test wait until they satisfy a condition, with a
/// deadline: no sleeps as synchronisation.
public final class Recorder<Value: Sendable>: Sendable {
    private struct Waiter {
        let predicate: @Sendable ([Value]) -> Bool
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        public var values: [Value] = []
        var waiters: [Int: Waiter] = [:]
        var nextID = 0
    }

    private let state = RelayMutex(State())

    public init() {}

    public var values: [Value] { self.state.withLock { $0.values } }

    public func append(_ value: Value) {
        let ready: [CheckedContinuation<Void, Never>] = self.state.withLock { state in
            state.values.append(value)
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in state.waiters where waiter.predicate(state.values) {
                ready.append(waiter.continuation)
                state.waiters[id] = nil
            }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    public struct TimedOut: Error, CustomStringConvertible {
        public let description: String
    }

    /// Waits until `predicate` holds for the values so far; throws after `timeout`.
    public func wait(
        timeout: Duration = .seconds(20),
        _ what: String = "condition",
        until predicate: @escaping @Sendable ([Value]) -> Bool
    ) async throws {
        let id = self.state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        let satisfied = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let now = self.state.withLock { state -> Bool in
                            if predicate(state.values) || Task.isCancelled { return true }
                            state.waiters[id] = Waiter(predicate: predicate, continuation: continuation)
                            return false
                        }
                        if now { continuation.resume() }
                    }
                } onCancel: {
                    let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                    waiter?.continuation.resume()
                }
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        guard satisfied || predicate(self.values) else {
            throw TimedOut(description: "timed out after \(timeout) waiting for \(what); have \(self.values.count) values")
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes: for state that offers no event to wait on.
public func waitUntil(
    timeout: Duration = .seconds(20),
    every interval: Duration = .milliseconds(5),
    _ what: String,
    _ condition: @Sendable () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    // The longest a poll took to come round again: far above `interval` means the whole test process stood still
    // (its few pool threads blocked), not that the condition's owner hung — a timeout says which.
    var longestPollGap = Duration.zero
    var lastPoll = ContinuousClock.now
    while !(try await condition()) {
        let now = ContinuousClock.now
        longestPollGap = max(longestPollGap, now - lastPoll)
        lastPoll = now
        guard now < deadline else {
            throw Recorder<Int>.TimedOut(
                description: "timed out after \(timeout) waiting for \(what) (longest gap between two polls: \(longestPollGap), "
                    + "polling every \(interval))"
            )
        }
        try await Task.sleep(for: interval)
    }
}
