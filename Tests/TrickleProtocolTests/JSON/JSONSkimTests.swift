import Testing
import TrickleProtocol
import TrickleRelaySupport

@Suite("JSONSkim")
struct JSONSkimTests {
    private func member(_ name: StaticString, _ text: String) -> String? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { raw in
            JSONSkim.member(name, in: raw).map { String(decoding: raw[$0], as: UTF8.self) }
        }
    }

    @Test("finds top-level members past nested objects, arrays, escapes and whitespace")
    func members() {
        let text = #" { "a" : {"type":"inner","x":[1,{"type":"deeper"}]}, "s":"q\"}{][\\", "type" : "outer" , "n":-1.5e3,"t":true}"#
        #expect(member("type", text) == #""outer""#)
        #expect(member("a", text) == #"{"type":"inner","x":[1,{"type":"deeper"}]}"#)
        #expect(member("s", text) == #""q\"}{][\\""#)
        #expect(member("n", text) == "-1.5e3")
        #expect(member("t", text) == "true")
        #expect(member("missing", text) == nil)
        #expect(member("typ", text) == nil)
    }

    @Test("not an object, or cut short: nil, no crash")
    func invalid() {
        #expect(member("a", "[1,2]") == nil)
        #expect(member("a", "") == nil)
        #expect(member("b", #"{"a":"unterminated"#) == nil)
        #expect(member("b", #"{"a":{"x":1"#) == nil)
    }

    @Test("valueStart: where a member's value starts, for reading inside it without skimming it to its end")
    func valueStart() {
        let text = #"{"id":"x","data":{"type":"heartbeat","note":"long"},"type":"telemetry"}"#
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { raw in
            let start = JSONSkim.valueStart("data", in: raw)
            #expect(start.map { raw[$0] } == UInt8(ascii: "{"))
            // Members of `data` are found in the suffix from its brace; the skim stops at `data`'s end.
            let inside = UnsafeRawBufferPointer(rebasing: raw[start!...])
            #expect(JSONSkim.stringContents("type", in: inside).map { String(decoding: inside[$0], as: UTF8.self) } == "heartbeat")
            #expect(JSONSkim.member("missing", in: inside) == nil)
            #expect(JSONSkim.valueStart("nope", in: raw) == nil)
            #expect(JSONSkim.valueStart("data", in: UnsafeRawBufferPointer(rebasing: raw[0..<17])) == nil, "cut short before the value")
        }
    }
}
