import Testing
import TrickleProtocol
import TrickleRelaySupport

@Suite("TrickleSeq: seqs from paths, headers and flags are parsed once and bounded")
struct TrickleSeqTests {
    @Test(
        "path seqs outside -2…2^53-1, or not integers, are refused with a reason",
        arguments: ["9223372036854775807", "9223372036854775808", "-9223372036854775808", "9007199254740992", "-3", "abc", "1.5", "", " ", "0x10", String(repeating: "9", count: 5_000)]
    )
    func refusedPathSeqs(text: String) {
        guard case .failure(let error) = TrickleSeq.parsePath(text) else {
            Issue.record("\(text.prefix(40)) was accepted")
            return
        }
        #expect(!error.description.isEmpty)
        #expect(error.description.count < 200)  // a 5,000-digit "seq" is not echoed back whole
    }

    @Test("path seqs in range are accepted", arguments: [("-2", -2), ("-1", -1), ("0", 0), ("42", 42), ("9007199254740991", 9_007_199_254_740_991)])
    func acceptedPathSeqs(text: String, value: Int) throws {
        #expect(try TrickleSeq.parsePath(text).get() == value)
    }

    @Test("header values: only 0…2^53-1; negative, huge and non-numeric are nil (a protocol error)")
    func headerValues() {
        #expect(TrickleSeq.parseHeader("7") == 7)
        #expect(TrickleSeq.parseHeader(" 7 ") == 7)
        #expect(TrickleSeq.parseHeader("9007199254740991") == TrickleSeq.maximum)
        for bad in ["-1", "-2", "9223372036854775807", "9007199254740992", "seven", "", "7;8", String(repeating: "1", count: 100)] {
            #expect(TrickleSeq.parseHeader(bad) == nil, "\(bad.prefix(30))")
        }
    }
}
