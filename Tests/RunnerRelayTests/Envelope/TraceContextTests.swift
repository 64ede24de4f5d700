import Foundation
import NIOCore
import Testing
@testable import RunnerRelay

private let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/// traceparent values a receiver must ignore (W3C Trace Context §3.2 and §4.3).
private let malformed: [String] = [
    "",
    "00",
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // a version we do not know, with the length of 00
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff is invalid
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // all-zero span id
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  // upper-case hex
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // trace id one digit short
    "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",  // one digit long
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  // span id short
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  // flags short
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  // extra fields after version 00
    "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",  // wrong delimiters
    "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  // not hex
    " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // leading space
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
    String(repeating: "0", count: 10_000),
]

@Suite("W3C trace context carried by the runner agent")
struct TraceContextTests {
    let identity = SessionIdentity(sessionID: "sess-1", connectionID: "conn-9")

    private func stamp(_ event: String, given: TraceContextHeaders? = nil) throws -> (envelope: String, data: [String: Any], invalid: Int) {
        var invalid = 0
        let envelope = String(
            buffer: try TelemetryEnvelope.make(
                event: ByteBuffer(string: event),
                identity: self.identity,
                timestampMillis: 1_763_769_600_123,
                id: "00000000-0000-4000-8000-000000000001",
                traceContext: given,
                invalidTraceValues: &invalid
            )
        )
        let object = try #require(try JSONSerialization.jsonObject(with: Data(envelope.utf8)) as? [String: Any])
        return (envelope, try #require(object["data"] as? [String: Any]), invalid)
    }

    @Test("malformed traceparent values are refused by the validator", arguments: malformed)
    func validatorRefuses(_ value: String) {
        let validation = TraceContextHeaders.validate(traceparent: value, tracestate: "vendor=1")
        #expect(validation.context == nil)
        #expect(validation.invalidValues == 2)  // the tracestate cannot travel without its traceparent
    }

    @Test("malformed traceparent members are dropped from the envelope and counted", arguments: malformed)
    func malformedMembersDropped(_ value: String) throws {
        let (envelope, data, invalid) = try self.stamp(#"{"type":"metric","traceparent":"\#(value)","v":1}"#)
        #expect(data["traceparent"] == nil)
        #expect(invalid == 1)
        #expect(envelope.hasSuffix(#""v":1}}"#))
    }

    @Test("a valid traceparent and tracestate are carried byte for byte, in the event's own order")
    func validCarried() throws {
        let state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        let (envelope, data, invalid) = try self.stamp(#"{"type":"metric","traceparent":"\#(valid)","tracestate":"\#(state)","v":1}"#)
        #expect(invalid == 0)
        #expect(envelope.contains(#""traceparent":"\#(valid)","tracestate":"\#(state)","v":1"#))
        #expect(data["tracestate"] as? String == state)
    }

    @Test("the request's context is added when the event has none; the event's own valid one wins")
    func requestContext() throws {
        let given = try #require(TraceContextHeaders.validate(traceparent: valid, tracestate: "a=1").context)
        let added = try self.stamp(#"{"type":"metric"}"#, given: given)
        #expect(added.data["traceparent"] as? String == valid)
        #expect(added.data["tracestate"] as? String == "a=1")
        let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        let kept = try self.stamp(#"{"type":"metric","traceparent":"\#(own)"}"#, given: given)
        #expect(kept.data["traceparent"] as? String == own)
        #expect(kept.data["tracestate"] == nil)  // the request's tracestate belongs to the request's parent
        // A malformed own value is dropped and the request's context used instead.
        let replaced = try self.stamp(#"{"type":"metric","traceparent":"bogus"}"#, given: given)
        #expect(replaced.data["traceparent"] as? String == valid)
        #expect(replaced.invalid == 1)
    }

    @Test("a malformed tracestate is dropped and counted; its valid traceparent stays")
    func malformedTraceState() throws {
        for state in ["=novalue", "key=", "k=v,,=x", "UPPER=1", String(repeating: "a=b,", count: 3000), "k=v\\u0001"] {
            let (_, data, invalid) = try self.stamp(#"{"type":"metric","traceparent":"\#(valid)","tracestate":"\#(state)"}"#)
            #expect(data["traceparent"] as? String == valid, "\(state.prefix(20))")
            #expect(data["tracestate"] == nil, "\(state.prefix(20))")
            #expect(invalid == 1, "\(state.prefix(20))")
        }
    }

    @Test("non-string and duplicate members are malformed values")
    func wrongTypes() throws {
        let number = try self.stamp(#"{"type":"metric","traceparent":42}"#)
        #expect(number.data["traceparent"] == nil)
        #expect(number.invalid == 1)
        let object = try self.stamp(#"{"type":"metric","traceparent":{"a":1},"tracestate":"a=1"}"#)
        #expect(object.data["traceparent"] == nil && object.data["tracestate"] == nil)
        #expect(object.invalid == 2)
        let duplicate = try self.stamp(#"{"type":"metric","traceparent":"bogus","traceparent":"\#(valid)"}"#)
        #expect(duplicate.envelope.components(separatedBy: "traceparent").count == 2)  // one member left
        #expect(duplicate.invalid == 1)
    }

    @Test("a full envelope keeps its bytes unless its data holds a malformed context")
    func envelopes() throws {
        let good = #"{"id":"e1","type":"stream_trace","timestamp":"1","data":{"type":"m","traceparent":"\#(valid)","x":[1,2]}}"#
        let kept = try self.stamp(good)
        #expect(kept.envelope == good)
        #expect(kept.invalid == 0)
        let bad = #"{"id":"e1","type":"stream_trace","timestamp":"1","data":{"type":"m","traceparent":"00-bad","x":[1,2]},"extra":true}"#
        let cleaned = try self.stamp(bad)
        #expect(cleaned.envelope == #"{"id":"e1","type":"stream_trace","timestamp":"1","data":{"type":"m","x":[1,2]},"extra":true}"#)
        #expect(cleaned.invalid == 1)
        let given = try #require(TraceContextHeaders.validate(traceparent: valid, tracestate: nil).context)
        let bare = #"{"id":"e1","type":"stream_trace","timestamp":"1","data":{"type":"m"}}"#
        let added = try self.stamp(bare, given: given)
        #expect(added.envelope == #"{"id":"e1","type":"stream_trace","timestamp":"1","data":{"type":"m","traceparent":"\#(valid)"}}"#)
    }
}
