import NIOCore
import Testing
@testable import TrickleProtocol
import TrickleRelaySupport

@Suite("JSONScanner")
struct JSONScannerTests {
    private func kind(_ text: String) -> Result<JSONScanner.ValueKind, JSONSyntaxError> {
        Array(text.utf8).withUnsafeBytes { bytes in
            do throws(JSONSyntaxError) {
                return .success(try JSONScanner.validate(bytes))
            } catch {
                return .failure(error)
            }
        }
    }

    @Test(
        "accepts strict JSON",
        arguments: [
            #"{}"#, #"{"a":1}"#, #" { "a" : [1, 2.5, -0.1e-3, 1.0e3, true, false, null] } "#, #"[]"#, #""x""#, "0", "-0",
            #"{"s":"\u00e9\n\"\\\/"}"#, #"{"nested":{"a":[{"b":{}}]}}"#, "1E+2", #"{"a":"é🎉"}"#,
        ]
    )
    func acceptsValid(text: String) {
        if case .failure(let error) = self.kind(text) {
            Issue.record("rejected \(text): \(error)")
        }
    }

    @Test(
        "rejects what strict JSON forbids",
        arguments: [
            "", " ", "NaN", #"{"a":NaN}"#, #"{"a":Infinity}"#, #"{"a":-Infinity}"#, "01", "1.", ".5", "1e", "+1",
            #"{"a":1,}"#, "[1,]", #"{'a':1}"#, #"{"a" 1}"#, #"{"a":1"#, #"{"a":"x"#, "tru", "nul", #"{"a":"\x"}"#,
            #"{"a":"\u12"}"#, "{\"a\":\"\u{1}\"}", #"{"a":1} x"#, #"{"a":1}{"b":2}"#, "{1:2}", "// c\n{}",
        ]
    )
    func rejectsInvalid(text: String) {
        if case .success = self.kind(text) {
            Issue.record("accepted \(text)")
        }
    }

    @Test("reports the kind of the top-level value")
    func kinds() throws {
        #expect(try self.kind("{}").get() == .object)
        #expect(try self.kind("[1]").get() == .array)
        #expect(try self.kind(#""s""#).get() == .string)
        #expect(try self.kind("12").get() == .number)
        #expect(try self.kind("null").get() == .literal)
    }

    @Test("refuses nesting deeper than the limit instead of recursing")
    func deepNesting() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        guard case .failure(let error) = self.kind(deep) else {
            Issue.record("accepted a 100,000-deep document")
            return
        }
        #expect(error.reason == "nesting too deep")
        let fine = String(repeating: "[", count: 500) + String(repeating: "]", count: 500)
        #expect((try? self.kind(fine).get()) == .array)
    }

    @Test("finds the raw bytes of top-level members without decoding")
    func members() throws {
        let text = #"{"event": {"id":"x","data":{"type":"t"}} , "type":"telemetry","n":1.0e3}"#
        var found: [String: String] = [:]
        let bytes = Array(text.utf8)
        let kind = try bytes.withUnsafeBytes { raw throws(JSONSyntaxError) in
            try JSONScanner.scan(raw) { key, member in
                found[String(decoding: key, as: UTF8.self)] = String(decoding: raw[member.range], as: UTF8.self)
            }
        }
        #expect(kind == .object)
        #expect(found["event"] == #"{"id":"x","data":{"type":"t"}}"#)
        #expect(found["type"] == #""telemetry""#)
        #expect(found["n"] == "1.0e3")
        #expect(found.count == 3)
    }

    @Test("strings: quotes, escapes, control characters and UTF-8 found at every position of the 8-byte fast path")
    func stringsAtEveryOffset() {
        func kind(_ text: String) -> Result<JSONScanner.ValueKind, JSONSyntaxError> {
            JSONScanner.kind(of: ByteBuffer(string: text))
        }
        for offset in 0..<20 {
            let pad = String(repeating: "a", count: offset)
            let tail = String(repeating: "b", count: 20 - offset)
            #expect((try? kind(#"{"k":"\#(pad)\"\#(tail)"}"#).get()) == .object, "escaped quote at \(offset)")
            #expect((try? kind(#"{"k":"\#(pad)\\\#(tail)"}"#).get()) == .object, "escaped backslash at \(offset)")
            #expect((try? kind(#"{"k":"\#(pad)é€😀\#(tail)"}"#).get()) == .object, "UTF-8 at \(offset)")
            #expect((try? kind("{\"k\":\"\(pad)\u{01}\(tail)\"}").get()) == nil, "control character at \(offset)")
            #expect((try? kind("{\"k\":\"\(pad)\t\(tail)\"}").get()) == nil, "raw tab at \(offset)")
            #expect((try? kind(#"{"k":"\#(pad)"\#(tail)"}"#).get()) == nil, "early quote at \(offset)")
            #expect((try? kind(#"{"k":"\#(pad)\x\#(tail)"}"#).get()) == nil, "bad escape at \(offset)")
            #expect((try? kind(#"{"k":"\#(pad)"#).get()) == nil, "unterminated at \(offset)")
        }
    }

    @Test("the block-at-a-time string skip never passes a quote, backslash, control byte (or, when asked, non-ASCII)")
    func plainSkipStopsInTime() {
        var generator = SystemRandomNumberGenerator()
        let specials: [UInt8] = [0x22, 0x5C, 0x00, 0x1F, 0x0A, 0x80, 0xC3, 0xFF, 0x7F, 0x20]
        for _ in 0..<20_000 {
            let count = Int.random(in: 0...64, using: &generator)
            var bytes = [UInt8]((0..<count).map { _ in UInt8.random(in: 0x21...0x7E, using: &generator) }).map { $0 == 0x22 || $0 == 0x5C ? 0x41 : $0 }
            for _ in 0..<Int.random(in: 0...2, using: &generator) where count > 0 {
                bytes[Int.random(in: 0..<count, using: &generator)] = specials.randomElement(using: &generator)!
            }
            let start = Int.random(in: 0...count, using: &generator)
            for stopsAtNonASCII in [false, true] {
                let stop = bytes.withUnsafeBytes { JSONStringWords.skipPlainWords($0, from: start, stopsAtNonASCII: stopsAtNonASCII) }
                let firstSpecial = bytes[start...].firstIndex { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 || (stopsAtNonASCII && $0 >= 0x80) } ?? count
                #expect(stop >= start && stop <= firstSpecial, "\(bytes) from \(start): stopped at \(stop), first special at \(firstSpecial)")
                // A stop short of the end is caused by its block (16 bytes, or 8 near the end): a special byte there,
                // or 0xFF (left to the byte loop when non-ASCII does not stop the skip).
                let block = bytes[stop..<min(stop + 16, count)]
                let caused = block.contains { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 || $0 == 0xFF || (stopsAtNonASCII && $0 >= 0x80) }
                #expect(count - stop < 8 || caused, "\(bytes) from \(start): stopped at \(stop) without cause")
                // And on the special byte itself when 8 bytes from there on are in the buffer and no 0xFF comes
                // first: the byte loop after it does not step there one byte at a time.
                let noFFBefore = !bytes[start..<firstSpecial].contains(0xFF)
                if firstSpecial + 8 <= count, noFFBefore {
                    #expect(stop == firstSpecial, "\(bytes) from \(start): stopped at \(stop), before the first special at \(firstSpecial)")
                }
            }
        }
    }

    @Test("the eight-at-a-time digit count agrees with a byte loop for every byte value at every position")
    func digitWords() {
        var generator = SystemRandomNumberGenerator()
        for position in 0..<8 {
            for value in 0...255 {
                for _ in 0..<4 {
                    // Digits before the probe, anything after it (a carry out of a byte ≥ 0xFA must not matter).
                    var bytes = (0..<8).map { _ in UInt8.random(in: 0x30...0x39, using: &generator) }
                    bytes[position] = UInt8(value)
                    for later in (position + 1)..<8 where Bool.random(using: &generator) {
                        bytes[later] = UInt8.random(in: 0...255, using: &generator)
                    }
                    let word = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                    let expected = bytes.firstIndex { $0 < 0x30 || $0 > 0x39 } ?? 8
                    #expect(JSONDigitWords.leadingDigits(word) == expected, "\(bytes)")
                }
            }
        }
    }

    @Test("numbers of every length and shape validate exactly as before, across the eight-byte boundary")
    func numbersAcrossWords() throws {
        for digits in 1...20 {
            let integer = "1" + String(repeating: "7", count: digits - 1)
            for text in [integer, "-\(integer)", "\(integer).5", "0.\(integer)", "\(integer)e+\(digits)", "-0.\(integer)E-9"] {
                for suffix in ["]", ",1]", " ]", "}"] {
                    let line = suffix == "}" ? "{\"n\":\(text)}" : "[\(text)\(suffix)"
                    #expect((try? JSONScanner.kind(of: ByteBuffer(string: line)).get()) == (suffix == "}" ? .object : .array), "\(line)")
                }
            }
            #expect((try? JSONScanner.kind(of: ByteBuffer(string: "[0\(integer)]")).get()) == nil, "leading zero")
            #expect((try? JSONScanner.kind(of: ByteBuffer(string: "[\(integer).]")).get()) == nil, "no fraction digit")
            #expect((try? JSONScanner.kind(of: ByteBuffer(string: "[\(integer)e]")).get()) == nil, "no exponent digit")
            #expect((try? JSONScanner.kind(of: ByteBuffer(string: "[\(integer)x]")).get()) == nil, "junk after digits")
        }
    }
}
