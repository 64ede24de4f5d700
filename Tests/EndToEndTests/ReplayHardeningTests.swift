import Foundation
import Testing
import TrickleTestSupport

/// Issue #9: replay is bounded and precise on bad input (UTF-8, duplicates, blank lines, pretty-printed files).
@Suite("trickle-relay replay on hostile recordings", .timeLimit(.minutes(1)))
struct ReplayHardeningTests {
    func temporaryFile(_ bytes: Data) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("replay-\(UUID().uuidString).jsonl").path
        try bytes.write(to: URL(fileURLWithPath: path))
        return path
    }

    func envelope(_ id: String, _ text: String = "ok") -> Data {
        Data(#"{"type":"telemetry","event":{"id":"\#(id)","type":"stream_trace","timestamp":"1","data":{"type":"metric","s":"\#(text)"}}}"#.utf8) + Data([0x0A])
    }

    @Test("ill-formed UTF-8 in one envelope: that line is reported as invalid_utf8; the valid ones reach the sink byte for byte")
    func invalidUTF8() async throws {
        var bytes = self.envelope("a") + self.envelope("b", "caf\u{e9}")
        // "b2" carries an overlong encoding of "/" and a lone surrogate: both ill-formed.
        bytes += Data(#"{"type":"telemetry","event":{"id":"bad","type":"stream_trace","timestamp":"1","data":{"type":"metric","s":""#.utf8)
        bytes += Data([0xC0, 0xAF, 0xED, 0xA0, 0x80]) + Data(#""}}}"#.utf8) + Data([0x0A])
        bytes += self.envelope("c")
        let input = try self.temporaryFile(bytes)
        defer { try? FileManager.default.removeItem(atPath: input) }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("replay-out-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let result = try await runTrickleRelay(["replay", "--summary", "json", "--sink", "file:\(output)", input])
        #expect(result.status == 0)
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        #expect(summary["telemetry"] as? Int == 3)
        #expect(summary["malformed"] as? Int == 1)
        let problems = try #require(summary["problems"] as? [[String: Any]])
        #expect(problems.map { "\($0["line"] ?? "-") \($0["reason"]!)" } == ["3 invalid_utf8"])
        let delivered = try Data(contentsOf: URL(fileURLWithPath: output))
        let expected = [self.envelope("a"), self.envelope("b", "caf\u{e9}"), self.envelope("c")].map { line in
            // The sink gets the envelope (the `event` value), not the frame.
            let text = String(decoding: line, as: UTF8.self)
            let start = text.range(of: #""event":"#)!.upperBound
            return String(text[start..<text.index(text.endIndex, offsetBy: -2)]) + "\n"
        }.joined()
        #expect(String(decoding: delivered, as: UTF8.self) == expected)
    }

    @Test("100,000 repeats of one id: the summary aggregates (distinct ids, total repeats), in bounded size")
    func duplicates() async throws {
        var bytes = Data()
        for _ in 0..<100_000 { bytes += self.envelope("same") }
        bytes += self.envelope("other") + self.envelope("other")
        let input = try self.temporaryFile(bytes)
        defer { try? FileManager.default.removeItem(atPath: input) }
        let json = try await runTrickleRelay(["replay", "--summary", "json", "--sink", "null", input])
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        #expect(summary["duplicates"] as? Int == 100_000)
        #expect(summary["distinctDuplicatedIDs"] as? Int == 2)
        #expect(summary["duplicateIDs"] as? [String] == ["same", "other"])
        let text = try await runTrickleRelay(["replay", "--sink", "null", input])
        #expect(text.output.contains("duplicate ids: 100000 repeats of 2 distinct ids (first: same, other)"))
        #expect(text.output.utf8.count < 2_000, "summary of \(text.output.utf8.count) bytes")
    }

    @Test("garbage: 50,000 bad lines give a bounded summary and log, with counts by reason")
    func garbage() async throws {
        var bytes = Data()
        for n in 0..<50_000 { bytes += Data("garbage \(n)\n".utf8) }
        bytes += self.envelope("fine")
        let input = try self.temporaryFile(bytes)
        defer { try? FileManager.default.removeItem(atPath: input) }
        let text = try await runTrickleRelay(["replay", "--sink", "null", "--log-level", "info", input])
        #expect(text.status == 0)
        #expect(text.output.contains("skipped by reason: malformed_json=50000"))
        #expect(text.output.contains("… and 49980 more"))
        #expect(text.output.contains("hint: most lines are not JSON"))
        #expect(text.output.utf8.count < 10_000, "summary of \(text.output.utf8.count) bytes")
        let logLines = text.errors.split(separator: "\n").filter { $0.contains("skipped") }
        #expect(logLines.count < 20, "\(logLines.count) log lines for 50,000 bad lines")
        let json = try await runTrickleRelay(["replay", "--summary", "json", "--sink", "null", input])
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        #expect((summary["problems"] as? [Any])?.count == 1_000)
        #expect(summary["problemsNotListed"] as? Int == 49_000)
        #expect(summary["telemetry"] as? Int == 1)
    }

    @Test("whitespace-only lines are skipped like empty ones; a truncated last line is reported as truncated")
    func blankAndTruncated() async throws {
        var bytes = self.envelope("a") + Data("   \n\t\r\n\n".utf8) + self.envelope("b")
        bytes += Data(#"{"type":"telemetry","event":{"id":"c","ty"#.utf8)  // cut short, no newline
        let input = try self.temporaryFile(bytes)
        defer { try? FileManager.default.removeItem(atPath: input) }
        let json = try await runTrickleRelay(["replay", "--summary", "json", "--sink", "null", input])
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        let problems = try #require(summary["problems"] as? [[String: Any]])
        #expect(problems.map { "\($0["line"] ?? "-") \($0["reason"]!)" } == ["6 truncated_line"])
        #expect(summary["telemetry"] as? Int == 2)
    }
}
