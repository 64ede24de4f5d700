// Built only with `TRICKLE_RELAY_FUZZ=1` (see Package.swift and `Fuzz/run.sh`). libFuzzer calls this once per input
// (main.swift hands it to the driver) and stops on the first trap, sanitizer report or broken invariant.

/// One fuzz input: the JSONL reader, the dispatcher, seq parsing and the subscriber's reply parser must take it without a trap and keep their invariants.
/// (Exported under libFuzzer's name as well: its runtime archive references it.)
@_cdecl("LLVMFuzzerTestOneInput")
public func trickleRelayFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    JSONLFuzzCase(input: input).check()
    SeqHeaderFuzzCase(input: input).check()
    SegmentReplyFuzzCase(input: input).check()
    return 0
}
