import Synchronization
import TrickleRelaySupport

/// A `Clock` that moves only when a test advances it: timing behaviour (throttled logs, heartbeats, report
/// intervals) is tested by advancing time, not by sleeping and polling.
///
/// Written here rather than taken from pointfreeco/swift-clocks (whose `TestClock` does the same): that package
/// brings swift-concurrency-extras and xctest-dynamic-overlay into the build for ~100 lines we need.
///
/// ```swift
/// let clock = ManualClock()
/// let heartbeat = RelaySelfTelemetry(…, clock: clock)
/// await clock.waitForSleepers(1)       // the heartbeat is waiting for its interval
/// clock.advance(by: .seconds(30))      // it wakes and emits
/// ```
public final class ManualClock: Clock, Sendable {
    public struct Instant: InstantProtocol, Sendable {
        public var offset: Duration
        public func advanced(by duration: Duration) -> Self { Self(offset: self.offset + duration) }
        public func duration(to other: Self) -> Duration { other.offset - self.offset }
        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.offset < rhs.offset }
    }

    private struct Sleeper {
        let id: UInt64
        let deadline: Instant
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [Sleeper] = []
        var nextID: UInt64 = 0
        var sleeperWaiters: [(id: UInt64, count: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let state = RelayMutex(State())

    public init() {}

    public var now: Instant { self.state.withLock { $0.now } }
    public var minimumResolution: Duration { .zero }

    /// Tasks sleeping on this clock now.
    public var sleepers: Int { self.state.withLock { $0.sleepers.count } }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        let id = self.state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (ready, woken): (Result<Void, any Error>?, [CheckedContinuation<Void, Never>]) = self.state.withLock { state in
                    if Task.isCancelled { return (.failure(CancellationError()), []) }
                    if deadline <= state.now { return (.success(()), []) }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return (nil, Self.takeSatisfiedWaiters(&state))
                }
                if let ready { continuation.resume(with: ready) }
                for waiter in woken { waiter.resume() }
            }
        } onCancel: {
            let sleeper = self.state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward by `duration`, waking every sleeper whose deadline is reached (in deadline order).
    public func advance(by duration: Duration) {
        let due = self.state.withLock { state -> [Sleeper] in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.deadline <= now }.sorted { $0.deadline < $1.deadline }
            state.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Suspends until at least `count` tasks sleep on this clock: a test advances time only once the code under
    /// test is waiting for it. Bounded: after `limit` of real time it throws (the code under test never slept).
    public func waitForSleepers(_ count: Int, within limit: Duration = .seconds(20)) async throws {
        let id = self.state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        let satisfied: Bool = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let ready = self.state.withLock { state -> Bool in
                            if state.sleepers.count >= count || Task.isCancelled { return true }
                            state.sleeperWaiters.append((id, count, continuation))
                            return false
                        }
                        if ready { continuation.resume() }
                    }
                } onCancel: {
                    let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                        guard let index = state.sleeperWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                        return state.sleeperWaiters.remove(at: index).continuation
                    }
                    waiter?.resume()
                }
                return !Task.isCancelled
            }
            group.addTask {
                try await Task.sleep(for: limit)
                return false
            }
            let first = try await group.next() ?? false
            group.cancelAll()
            return first
        }
        guard satisfied else {
            throw ManualClockTimedOut(description: "timed out after \(limit) waiting for \(count) sleepers (\(self.sleepers) sleeping)")
        }
    }

    /// Moves time forward by `duration`, then waits until `count` tasks sleep again: the code that woke has done
    /// its work and waits for its next deadline.
    public func advance(by duration: Duration, thenWaitForSleepers count: Int) async throws {
        self.advance(by: duration)
        try await self.waitForSleepers(count)
    }

    private static func takeSatisfiedWaiters(_ state: inout State) -> [CheckedContinuation<Void, Never>] {
        let count = state.sleepers.count
        let satisfied = state.sleeperWaiters.filter { $0.count <= count }.map(\.continuation)
        state.sleeperWaiters.removeAll { $0.count <= count }
        return satisfied
    }
}

/// The code under test did not sleep on the manual clock within the real-time limit.
public struct ManualClockTimedOut: Error, CustomStringConvertible {
    public let description: String
}
