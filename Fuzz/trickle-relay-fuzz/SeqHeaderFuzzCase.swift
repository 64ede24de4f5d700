import TrickleProtocol
import TrickleRelaySupport

/// Seq values from the network (paths and `Lp-Trickle-*` headers): any text either parses into the range the
/// server can represent or is refused, never traps.
struct SeqHeaderFuzzCase {
    let text: String

    init(input: [UInt8]) {
        self.text = String(decoding: input.prefix(64), as: UTF8.self)
    }

    func check() {
        if let seq = TrickleSeq.parseHeader(self.text) {
            fuzzRequire(TrickleSeq.isValid(seq), "parseHeader(\(self.text.debugDescription)) gave \(seq)")
        }
        if case .success(let seq) = TrickleSeq.parsePath(self.text) {
            fuzzRequire(seq >= -2 && seq <= TrickleSeq.maximum, "parsePath(\(self.text.debugDescription)) gave \(seq)")
        }
    }
}
