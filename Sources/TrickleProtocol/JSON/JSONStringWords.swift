import TrickleRelaySupport
/// The 8-bytes-at-a-time fast path of every string scan (``JSONScanner`` and ``JSONSkim``).
@usableFromInline
enum JSONStringWords {
    /// The first index at or after `start` whose 8-byte word holds a quote, a backslash or a control character
    /// (or the last index from which fewer than 8 bytes remain). The usual SWAR tests for "has a byte equal to"
    /// and "has a byte less than": a hit only means "look closer"; the caller's byte loop decides exactly.
    ///
    /// - Parameter stopsAtNonASCII: Also stop at a word holding a byte ≥ 0x80 (the validating scanner checks
    ///   UTF-8 there); ASCII text, the common case, stays on the 8-byte path either way.
    @inlinable
    static func skipPlainWords(_ bytes: UnsafeRawBufferPointer, from start: Int, stopsAtNonASCII: Bool = false) -> Int {
        guard let base = bytes.baseAddress else { return start }
        var index = start
        while index + 8 <= bytes.count {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let quotes = word ^ 0x2222_2222_2222_2222
            let backslashes = word ^ 0x5C5C_5C5C_5C5C_5C5C
            let hits =
                ((quotes &- 0x0101_0101_0101_0101) & ~quotes) | ((backslashes &- 0x0101_0101_0101_0101) & ~backslashes)
                | ((word &- 0x2020_2020_2020_2020) & ~word) | (stopsAtNonASCII ? word : 0)
            if hits & 0x8080_8080_8080_8080 != 0 { return index }
            index += 8
        }
        return index
    }
}
