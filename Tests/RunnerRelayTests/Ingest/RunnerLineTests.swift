import NIOCore
import Testing
@testable import RunnerRelay

@Suite("RunnerLine")
struct RunnerLineTests {
    private func classify(_ text: String) -> String {
        switch RunnerLine(ByteBuffer(string: text)) {
        case .telemetry(let event): return "telemetry \(String(buffer: event))"
        case .control(let line): return "control \(String(buffer: line))"
        case .invalid: return "invalid"
        }
    }

    @Test("telemetry frames give their event; bare envelopes are telemetry; everything else is control")
    func rules() {
        #expect(self.classify(#"{"type":"telemetry","event":{"type":"x","v":1.0e3}}"#) == #"telemetry {"type":"x","v":1.0e3}"#)
        #expect(self.classify(#"{"event":{"type":"x"},"type":"telemetry"}"#) == #"telemetry {"type":"x"}"#)
        let envelope = #"{"id":"a","type":"stream_trace","timestamp":"1","data":{"type":"e"}}"#
        #expect(self.classify(envelope) == "telemetry \(envelope)")
        #expect(self.classify(#"{"type":"stream_trace","data":5}"#) == #"control {"type":"stream_trace","data":5}"#)
        #expect(self.classify(#"{"type":"runner_ready","runner_job_id":null}"#) == #"control {"type":"runner_ready","runner_job_id":null}"#)
        #expect(self.classify(#"{"no":"type"}"#) == #"control {"no":"type"}"#)
    }

    @Test("bad lines are invalid", arguments: ["nope", "[1]", #"{"type":"telemetry"}"#, #"{"type":"telemetry","event":[1]}"#, #"{"a":NaN}"#])
    func invalid(line: String) {
        #expect(self.classify(line) == "invalid")
    }
}
