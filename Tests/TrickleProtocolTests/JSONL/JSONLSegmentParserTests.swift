import NIOCore
import Testing
@testable import TrickleProtocol
import TrickleRelaySupport

@Suite("JSONLSegmentParser")
struct JSONLSegmentParserTests {
    private func parse(_ segments: [String], cap: Int = 1024) -> [String] {
        var parser = JSONLSegmentParser(source: "events", seq: -1, maximumSegmentBytes: cap)
        var items: [JSONLSegmentParser.Item] = []
        for (seq, segment) in segments.enumerated() {
            parser.startSegment(seq: seq)
            parser.feed(ByteBuffer(string: segment), into: &items)
            parser.finishSegment(into: &items)
        }
        return items.map { item in
            switch item {
            case .line(let line): return "\(line.seq).\(line.lineNumber) \(String(buffer: line.bytes))"
            case .diagnostic(let d): return "\(d.seq).\(d.lineNumber.map(String.init) ?? "-") \(d.reason)"
            }
        }
    }

    @Test("reports malformed, non-object and truncated lines and delivers the lines after them")
    func reportsAndGoesOn() {
        let segment = """
            {"ok":1}
            {not json}
            [1,2]
            "str"
            {"a":NaN}
            {"ok":2}
            {"cut":
            """
        #expect(
            self.parse([segment, "{\"next\":true}\n"]) == [
                "0.1 {\"ok\":1}", "0.2 malformed_json", "0.3 not_an_object", "0.4 not_an_object", "0.5 malformed_json",
                "0.6 {\"ok\":2}", "0.7 truncated_line", "1.1 {\"next\":true}",
            ]
        )
    }

    @Test("an unterminated last line that is valid JSON is delivered")
    func unterminatedValid() {
        #expect(self.parse(["{\"a\":1}\n{\"b\":2}"]) == ["0.1 {\"a\":1}", "0.2 {\"b\":2}"])
    }

    @Test("lines never join across segments")
    func noJoinAcrossSegments() {
        #expect(self.parse(["{\"a\":", "1}\n"]) == ["0.1 truncated_line", "1.1 malformed_json"])
    }

    @Test("a segment over the cap is reported once, its earlier lines kept, the next segment read")
    func segmentCap() {
        let line = "{\"k\":\"\(String(repeating: "v", count: 30))\"}\n"  // 39 bytes
        let big = String(repeating: line, count: 10)
        let items = self.parse([big, line], cap: 100)
        #expect(items == ["0.1 " + line.dropLast(), "0.2 " + line.dropLast(), "0.- segment_too_large", "1.1 " + line.dropLast()])
    }

    @Test("a line over the cap is reported as too large, not buffered")
    func lineCap() {
        let long = "{\"k\":\"\(String(repeating: "v", count: 200))\"}"
        var parser = JSONLSegmentParser(source: "f", seq: -1, maximumSegmentBytes: .max, maximumLineBytes: 64)
        var items: [JSONLSegmentParser.Item] = []
        parser.feed(ByteBuffer(string: "\(long)\n{\"a\":1}\n"), into: &items)
        parser.finishSegment(into: &items)
        guard items.count == 2, case .diagnostic(let d) = items[0], case .line(let l) = items[1] else {
            Issue.record("unexpected items \(items)")
            return
        }
        #expect(d.reason == .lineTooLarge)
        #expect(d.bytes == long.utf8.count)
        #expect(d.lineNumber == 1)
        #expect(String(buffer: l.bytes) == "{\"a\":1}")
    }
}
