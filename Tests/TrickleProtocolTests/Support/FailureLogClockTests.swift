import Logging
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// `FailureLog` on a manual clock (issue #24): its throttle is tested by advancing time, not by waiting for it.
@Suite("FailureLog timing on a manual clock")
struct FailureLogClockTests {
    @Test("one warning when the state starts, one '(still)' per interval with the count, one line when it clears")
    func throttledByTheClock() {
        let clock = ManualClock()
        let logs = CapturedLogs()
        let log = FailureLog("endpoint failing", logger: logs.logger(), interval: .seconds(30), clock: clock)
        for _ in 0..<100 { log.failed(reason: "HTTP 500") }
        #expect(logs.lines.filter { $0.contains("endpoint failing") }.count == 1, "\(logs.lines)")
        clock.advance(by: .seconds(29))
        log.failed(reason: "HTTP 500")
        #expect(logs.lines.count == 1, "within the interval: silent")
        clock.advance(by: .seconds(1))
        log.failed(reason: "HTTP 503")
        let still = logs.lines.filter { $0.contains("endpoint failing (still)") }
        #expect(still.count == 1 && still[0].contains("failures=102") && still[0].contains("for_s=30"), "\(logs.lines)")
        clock.advance(by: .seconds(15))
        log.cleared()
        let recovered = logs.lines.filter { $0.contains("endpoint failing: recovered") }
        #expect(recovered.count == 1 && recovered[0].contains("for_s=45"), "\(logs.lines)")
        #expect(log.current == nil && !log.isFailing)
        log.cleared()
        #expect(logs.lines.count == 3, "a success while healthy logs nothing")
        #expect(!log.isFailing)
        // A new failure starts a new state: a warning again, and `current` counts from one.
        log.failed(reason: "connection refused")
        #expect(log.isFailing && log.current?.failures == 1 && log.current?.reason == "connection refused")
        #expect(logs.lines.count == 4 && logs.lines[3].contains("endpoint failing"), "\(logs.lines)")
    }

    @Test("failures and successes noted from many tasks at once leave isFailing and current agreeing")
    func concurrentFailuresAndSuccesses() async {
        let log = FailureLog("endpoint failing", logger: CapturedLogs().logger())
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for n in 0..<5_000 {
                        if (n + task) % 3 == 0 { log.cleared() } else { log.failed(reason: "HTTP 500") }
                    }
                }
            }
        }
        #expect(log.isFailing == (log.current != nil))
        log.failed(reason: "HTTP 503")
        #expect(log.isFailing && log.current?.reason == "HTTP 503")
        log.cleared()
        #expect(!log.isFailing && log.current == nil)
    }

    @Test("ProblemLog: the first reports in full, then one 'more input skipped' per interval of the clock, the rest at flush")
    func problemLogThrottledByTheClock() {
        let clock = ManualClock()
        let logs = CapturedLogs()
        let log = ProblemLog(logger: logs.logger(), throttle: ProblemThrottle(detailedPerKind: 2, interval: .seconds(10)), clock: clock)
        for n in 0..<50 { log.report("malformed_json", "bad line", metadata: ["line": "\(n)"]) }
        #expect(logs.lines.count == 2, "only the first two in full: \(logs.lines)")
        clock.advance(by: .seconds(9))
        log.report("malformed_json", "bad line")
        #expect(logs.lines.count == 2, "within the interval: silent")
        clock.advance(by: .seconds(1))
        log.report("malformed_json", "bad line")
        let skipped = logs.lines.filter { $0.contains("more input skipped") }
        #expect(skipped.count == 1 && skipped[0].contains("count=50"), "\(logs.lines)")
        log.report("malformed_json", "bad line")
        log.flush()
        #expect(logs.lines.last?.contains("count=1") == true, "\(logs.lines)")
    }
}
