import Testing
import TrickleTestSupport

/// The test clock itself: tests that advance it rely on these.
@Suite("ManualClock")
struct ManualClockTests {
    @Test("sleepers wake in deadline order only when time reaches their deadline; cancellation ends a sleep")
    func wakesAtDeadlines() async throws {
        let clock = ManualClock()
        try await withThrowingTaskGroup(of: Int.self) { group in
            group.addTask { try await clock.sleep(for: .seconds(10)); return 10 }
            group.addTask { try await clock.sleep(for: .seconds(5)); return 5 }
            try await clock.waitForSleepers(2)
            clock.advance(by: .seconds(4))
            #expect(clock.sleepers == 2)
            clock.advance(by: .seconds(1))
            #expect(try await group.next() == 5)
            #expect(clock.sleepers == 1)
            group.cancelAll()
            await #expect(throws: CancellationError.self) { try await group.next() }
        }
    }

    @Test("waiting for sleepers that never come is bounded: it throws after its real-time limit")
    func waitForSleepersIsBounded() async throws {
        let clock = ManualClock()
        await #expect(throws: ManualClockTimedOut.self) { try await clock.waitForSleepers(1, within: .milliseconds(50)) }
        // A sleep whose deadline has passed returns at once and never counts as a sleeper.
        try await clock.sleep(until: clock.now)
        #expect(clock.sleepers == 0)
    }
}
