import NIOCore
import NIOPosix
import Testing
import TrickleRelaySupport

@Suite("EventLoopSleep", .timeLimit(.minutes(1)))
struct EventLoopSleepTests {
    @Test("sleeps at least the time asked on the loop's timer, and says it elapsed")
    func elapses() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        let started = ContinuousClock.now
        #expect(await EventLoopSleep.sleep(for: .milliseconds(50), on: loop))
        #expect(ContinuousClock.now - started >= .milliseconds(50))
    }

    @Test("a cancelled sleeper returns at once with false, long before its timer; cancelled before it starts, too")
    func cancellation() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        let started = ContinuousClock.now
        let sleeper = Task { await EventLoopSleep.sleep(for: .seconds(60), on: loop) }
        sleeper.cancel()
        #expect(await sleeper.value == false)
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await EventLoopSleep.sleep(for: .seconds(60), on: loop)
        }
        #expect(await early.value == false)
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test("many sleepers, most cancelled: the ones left still wake")
    func many() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        let woke = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<1_000 {
                group.addTask { await EventLoopSleep.sleep(for: index % 10 == 0 ? .milliseconds(20) : .seconds(60), on: loop) }
            }
            var woke = 0
            for try await elapsed in group {
                if elapsed { woke += 1 }
                if woke == 100 { group.cancelAll() }
            }
            return woke
        }
        #expect(woke == 100)
    }
}
