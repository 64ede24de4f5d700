import NIOCore
import Testing
@testable import TrickleProtocol
import TrickleRelaySupport

/// Issue #9 item 4: ill-formed UTF-8 inside a string is malformed, with its own reason, at every position of the
/// 8-byte fast path; every well-formed sequence passes.
@Suite("JSONScanner: UTF-8 in strings")
struct JSONScannerUTF8Tests {
    private func validate(_ bytes: [UInt8]) -> Result<JSONScanner.ValueKind, JSONSyntaxError> {
        bytes.withUnsafeBytes { raw in
            do throws(JSONSyntaxError) {
                return .success(try JSONScanner.validate(raw))
            } catch {
                return .failure(error)
            }
        }
    }

    /// `{"s":"<padding><sequence><padding>"}` with the sequence at each offset of an 8-byte word.
    private func documents(around sequence: [UInt8]) -> [[UInt8]] {
        (0..<17).map { padding in
            Array(#"{"s":""#.utf8) + Array(repeating: UInt8(ascii: "a"), count: padding) + sequence
                + Array(repeating: UInt8(ascii: "b"), count: 16 - padding) + Array(#""}"#.utf8)
        }
    }

    static let illFormed: [(String, [UInt8])] = [
        ("stray continuation byte", [0x80]),
        ("continuation byte 0xBF", [0xBF]),
        ("overlong 2-byte (C0 AF = '/')", [0xC0, 0xAF]),
        ("overlong 2-byte (C1 BF)", [0xC1, 0xBF]),
        ("overlong 3-byte (E0 80 AF)", [0xE0, 0x80, 0xAF]),
        ("overlong 4-byte (F0 80 80 AF)", [0xF0, 0x80, 0x80, 0xAF]),
        ("UTF-16 high surrogate (ED A0 80)", [0xED, 0xA0, 0x80]),
        ("UTF-16 low surrogate (ED BF BF)", [0xED, 0xBF, 0xBF]),
        ("past U+10FFFF (F4 90 80 80)", [0xF4, 0x90, 0x80, 0x80]),
        ("lead byte F5", [0xF5, 0x80, 0x80, 0x80]),
        ("byte FF", [0xFF]),
        ("byte FE", [0xFE]),
        ("truncated 2-byte (C3 then ASCII)", [0xC3, 0x41]),
        ("truncated 3-byte (E2 82 then ASCII)", [0xE2, 0x82, 0x41]),
        ("truncated 4-byte (F0 9F 8E then ASCII)", [0xF0, 0x9F, 0x8E, 0x41]),
        ("Latin-1 é (E9) alone", [0xE9, 0x41, 0x41]),
    ]

    @Test("ill-formed UTF-8 is refused as invalid_utf8 at every offset", arguments: Self.illFormed)
    func refused(name: String, sequence: [UInt8]) {
        for document in self.documents(around: sequence) {
            guard case .failure(let error) = self.validate(document) else {
                Issue.record("\(name) accepted")
                return
            }
            #expect(error.isInvalidUTF8, "\(name): \(error)")
        }
    }

    @Test("a sequence cut by the end of the input is refused, never read past the end")
    func truncatedAtEnd() {
        for sequence: [UInt8] in [[0xC3], [0xE2, 0x82], [0xF0, 0x9F, 0x8E]] {
            // Unterminated string: the document ends inside the sequence.
            let document = Array(#"{"s":"abc"#.utf8) + sequence
            guard case .failure = self.validate(document) else {
                Issue.record("\(sequence) at the end accepted")
                continue
            }
        }
    }

    static let wellFormed: [(String, [UInt8])] = [
        ("é (C3 A9)", [0xC3, 0xA9]),
        ("U+0080 (C2 80)", [0xC2, 0x80]),
        ("U+07FF (DF BF)", [0xDF, 0xBF]),
        ("U+0800 (E0 A0 80)", [0xE0, 0xA0, 0x80]),
        ("€ (E2 82 AC)", [0xE2, 0x82, 0xAC]),
        ("U+D7FF (ED 9F BF)", [0xED, 0x9F, 0xBF]),
        ("U+E000 (EE 80 80)", [0xEE, 0x80, 0x80]),
        ("U+FFFF (EF BF BF)", [0xEF, 0xBF, 0xBF]),
        ("🎉 (F0 9F 8E 89)", [0xF0, 0x9F, 0x8E, 0x89]),
        ("U+10FFFF (F4 8F BF BF)", [0xF4, 0x8F, 0xBF, 0xBF]),
        ("mixed", Array("日本語 — ça va? 🎉".utf8)),
    ]

    @Test("well-formed UTF-8 passes at every offset", arguments: Self.wellFormed)
    func accepted(name: String, sequence: [UInt8]) {
        for document in self.documents(around: sequence) {
            if case .failure(let error) = self.validate(document) {
                Issue.record("\(name) refused: \(error)")
            }
        }
    }

    @Test("Swift's own decoder agrees with the scanner on 20,000 random byte strings")
    func agreesWithTheStandardLibrary() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let length = Int.random(in: 1...12, using: &generator)
            // Bytes ≥ 0x80 mostly, plus printable ASCII; no quote, backslash or control characters.
            let sequence: [UInt8] = (0..<length).map { _ in
                Bool.random(using: &generator) ? UInt8.random(in: 0x80...0xFF, using: &generator) : UInt8.random(in: 0x41...0x5A, using: &generator)
            }
            let valid = String(validating: sequence, as: UTF8.self) != nil
            let document = Array(#"{"s":""#.utf8) + sequence + Array(#""}"#.utf8)
            switch self.validate(document) {
            case .success: #expect(valid, "accepted ill-formed \(sequence)")
            case .failure(let error): #expect(!valid && error.isInvalidUTF8, "refused well-formed \(sequence): \(error)")
            }
        }
    }

    @Test("a JSONL segment reports the line as invalid_utf8 and goes on with the next line")
    func segmentParser() {
        var parser = JSONLSegmentParser(source: "test", seq: 3, maximumSegmentBytes: 1 << 20, maximumLineBytes: 1 << 20, validatesObjects: true)
        var bytes = ByteBuffer(string: "{\"a\":1}\n{\"s\":\"")
        bytes.writeBytes([0xC0, 0xAF])
        bytes.writeString("\"}\n \t \r\n{\"b\":2}\n")
        var items: [JSONLSegmentParser.Item] = []
        parser.feed(bytes, into: &items)
        parser.finishSegment(into: &items)
        var lines: [String] = []
        var reasons: [String] = []
        for item in items {
            switch item {
            case .line(let line): lines.append(String(buffer: line.bytes))
            case .diagnostic(let diagnostic): reasons.append("\(diagnostic.lineNumber ?? -1):\(diagnostic.reason)")
            }
        }
        #expect(lines == ["{\"a\":1}", "{\"b\":2}"])
        #expect(reasons == ["2:invalid_utf8"], "the whitespace-only line 3 is skipped silently, like an empty one")
    }
}
