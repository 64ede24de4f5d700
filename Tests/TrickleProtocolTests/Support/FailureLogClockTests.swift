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
        log.cleared()
        #expect(logs.lines.count == 3, "a success while healthy logs nothing")
        #expect(!log.isFailing)
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
