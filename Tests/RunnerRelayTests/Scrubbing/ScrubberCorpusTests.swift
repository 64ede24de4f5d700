import Foundation
import NIOCore
import Testing
@testable import RunnerRelay

/// One corpus case: a member name and value; `redacted` names the marker expected, absent for a value that must
/// pass byte for byte (`fixtures/scrubber-corpus.jsonl`, positives and negatives together).
struct ScrubberCorpusCase: Sendable, CustomTestStringConvertible {
    let key: String
    let value: String
    let redacted: String?
    let why: String

    var testDescription: String { "\(self.redacted == nil ? "keeps" : "redacts") \(self.why)" }

    static func load() throws -> [Self] {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fixtures/scrubber-corpus.jsonl")
        let text = try String(contentsOf: url, encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
            return Self(key: object["key"]!, value: object["value"]!, redacted: object["redacted"], why: object["why"]!)
        }
    }
}

@Suite("Scrubber corpus (fixtures/scrubber-corpus.jsonl)")
struct ScrubberCorpusTests {
    static let cases = (try? ScrubberCorpusCase.load()) ?? []

    @Test("the corpus is there, with positives and negatives")
    func corpusLoads() {
        #expect(Self.cases.count(where: { $0.redacted != nil }) >= 25)
        #expect(Self.cases.count(where: { $0.redacted == nil }) >= 25)
    }

    @Test("every case, as a member of an event", arguments: Self.cases)
    func corpus(_ item: ScrubberCorpusCase) throws {
        let document = try JSONSerialization.data(withJSONObject: ["type": "metric", item.key: item.value], options: [.sortedKeys])
        let (scrubbed, redactions) = Scrubber().scrub(json: ByteBuffer(bytes: document))
        let output = String(buffer: scrubbed)
        if let kind = item.redacted {
            #expect(output.contains("[REDACTED:\(kind)]"), "\(item.why): \(output)")
            #expect(redactions >= 1)
            // Nothing of a long secret survives next to its marker.
            if item.value.count >= 12, kind != "home_path" {
                let secretTail = String(item.value.suffix(8))
                #expect(!output.contains(secretTail) || item.value.hasSuffix(" now") || item.value.hasSuffix(" up") || item.value.hasSuffix(" ok")
                    || item.value.hasSuffix(" used") || item.value.hasSuffix(" pushed") || item.value.hasSuffix("failed") || item.value.hasSuffix("x=1")
                    || item.value.hasSuffix("/app"), "\(item.why): \(output)")
            }
        } else {
            #expect(redactions == 0, "\(item.why): \(output)")
            #expect(output == String(decoding: document, as: UTF8.self), "\(item.why): the bytes must be unchanged")
        }
    }
}
