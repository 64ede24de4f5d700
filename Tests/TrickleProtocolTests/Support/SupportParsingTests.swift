#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TrickleProtocol
import TrickleRelaySupport

@Suite("Text, JSON and secret-file helpers that replace Foundation's (the binary links FoundationEssentials only)")
struct SupportParsingTests {
    @Test("trimmed removes ASCII whitespace at both ends only")
    func trimming() {
        #expect(TextParsing.trimmed("  a b \t\r\n") == "a b")
        #expect(TextParsing.trimmed("\n\n") == "")
        #expect(TextParsing.trimmed("") == "")
        #expect(TextParsing.trimmed("é ") == "é")
    }

    @Test("percent decoding: escapes decoded; a bad escape or non-UTF-8 result is nil")
    func percentDecoding() {
        #expect(TextParsing.percentDecoded("Bearer%20abc%3D") == "Bearer abc=")
        #expect(TextParsing.percentDecoded("plain") == "plain")
        #expect(TextParsing.percentDecoded("%C3%A9") == "é")
        for bad in ["%", "%4", "%zz", "%FF", "a%2"] {
            #expect(TextParsing.percentDecoded(bad) == nil, "\(bad)")
        }
    }

    @Test("HTTP dates: IMF-fixdate only, to Unix seconds")
    func httpDates() {
        #expect(TextParsing.httpDate("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(TextParsing.httpDate("Thu, 01 Jan 1970 00:00:00 GMT") == 0)
        #expect(TextParsing.httpDate("Tue, 29 Feb 2028 12:00:00 GMT") == 1_835_438_400)
        for bad in ["", "Sun, 06 Nov 1994 08:49:37 UTC", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT"] {
            #expect(TextParsing.httpDate(bad) == nil, "\(bad)")
        }
    }

    @Test("JSONValue keeps booleans, integers, doubles, strings, arrays and objects apart")
    func jsonValues() throws {
        let value = try JSONValue.parse(Array(#"{"a":true,"b":1,"c":1.5,"d":"x\n","e":[null,0],"f":{}}"#.utf8))
        let object = try #require(value.objectValue)
        #expect(object["a"] == .bool(true))
        #expect(object["b"] == .integer(1))
        #expect(object["c"] == .double(1.5))
        #expect(object["d"] == .string("x\n"))
        #expect(object["e"] == .array([.null, .integer(0)]))
        #expect(object["f"] == .object([:]))
        #expect(object["a"]?.doubleValue == nil)  // true is not 1
        #expect(try JSONValue.parse(Array(#""a\"b""#.utf8)) == .string("a\"b"))
    }

    @Test("JSONValue refuses what is not JSON, with a reason", arguments: ["", "{", "{\"a\":}", "[1,]", "tru", "{\"a\":1}x"])
    func jsonRefused(text: String) {
        #expect(throws: JSONValue.SyntaxError.self) { try JSONValue.parse(Array(text.utf8)) }
    }

    @Test("a secret file is read trimmed; missing, empty, a directory, too large or not text are refused, naming the file")
    func secretFiles() throws {
        let directory = FileManager.default.temporaryDirectory.path + "/secret-file-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func write(_ name: String, _ bytes: [UInt8]) -> String {
            let path = directory + "/" + name
            _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
            return path
        }
        #expect(try SecretFile.read(path: write("good", Array("  s3cr3t-token\n".utf8))) == "s3cr3t-token")
        let cases: [(String, SecretFile.Failure.Code)] = [
            (directory + "/missing", .unreadable),
            (write("empty", []), .empty),
            (write("blank", Array(" \n\t\n".utf8)), .empty),
            (directory, .unreadable),
            (write("huge", [UInt8](repeating: UInt8(ascii: "a"), count: SecretFile.maximumBytes + 1)), .tooLarge),
            (write("binary", [0xFF, 0xFE, 0x00]), .notText),
        ]
        for (path, code) in cases {
            do {
                _ = try SecretFile.read(path: path)
                Issue.record("\(path) was accepted")
            } catch {
                #expect(error.code == code, "\(path)")
                #expect(error.description.hasPrefix(path))
            }
        }
        // Exactly at the bound is fine.
        #expect(try SecretFile.read(path: write("bound", [UInt8](repeating: UInt8(ascii: "b"), count: SecretFile.maximumBytes))).utf8.count == SecretFile.maximumBytes)
    }

    @Test("a write to a pipe whose reader is gone closes the writer (EPIPE), never traps")
    func brokenPipe() throws {
        var descriptors: [Int32] = [0, 0]
        try #require(pipe(&descriptors) == 0)
        let previous = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previous) }
        close(descriptors[0])
        let writer = StandardStreamWriter(descriptor: descriptors[1])
        defer { close(descriptors[1]) }
        #expect(writer.write("first line\n") == false)
        #expect(writer.isClosed)
        #expect(writer.closingError == EPIPE)
        #expect(writer.write("second line\n") == false)
    }

    @Test("whole records reach a pipe that is read")
    func wholeRecords() throws {
        var descriptors: [Int32] = [0, 0]
        try #require(pipe(&descriptors) == 0)
        defer { close(descriptors[0]) }
        let writer = StandardStreamWriter(descriptor: descriptors[1])
        #expect(writer.write("one\n"))
        #expect(writer.write(Array("two\n".utf8)))
        close(descriptors[1])
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { read(descriptors[0], $0.baseAddress, $0.count) }
        #expect(String(decoding: buffer[..<max(count, 0)], as: UTF8.self) == "one\ntwo\n")
    }
}
