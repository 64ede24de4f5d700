import TrickleRelaySupport
/// The many-bytes-at-a-time fast path of every string scan (``JSONScanner`` and ``JSONSkim``).
@usableFromInline
enum JSONStringWords {
    /// The first index at or after `start` whose 16-byte block (then 8-byte word) holds a quote, a backslash or a
    /// control character (or the last index from which fewer than 8 bytes remain). A hit only means "look
    /// closer": the caller's byte loop decides exactly. Blocks of 16 are compared as vectors (SSE2 / NEON);
    /// the tail of 8 uses the usual SWAR tests for "has a byte equal to" and "has a byte less than".
    ///
    /// - Parameter stopsAtNonASCII: Also stop at a block holding a byte ≥ 0x80 (the validating scanner checks
    ///   UTF-8 there); ASCII text, the common case, stays on the fast path either way.
    @inlinable
    static func skipPlainWords(_ bytes: UnsafeRawBufferPointer, from start: Int, stopsAtNonASCII: Bool = false) -> Int {
        guard let base = bytes.baseAddress else { return start }
        var index = start
        let quote = SIMD16<UInt8>(repeating: 0x22)
        let backslash = SIMD16<UInt8>(repeating: 0x5C)
        let space = SIMD16<UInt8>(repeating: 0x20)
        let high = SIMD16<UInt8>(repeating: stopsAtNonASCII ? 0x80 : 0xFF)
        while index + 16 <= bytes.count {
            let block = base.loadUnaligned(fromByteOffset: index, as: SIMD16<UInt8>.self)
            // Bytes < 0x20 or ≥ the high bound (0x80, or never when 0xFF is allowed) are outside [0x20, high):
            // one unsigned range test, as a wrapping subtraction.
            let outside = (block &- space) .>= (high &- space)
            let hits = (block .== quote) .| (block .== backslash) .| outside
            if any(hits) {
                // 0xFF itself is plain text when non-ASCII does not stop us: the byte loop decides.
                return index
            }
            index += 16
        }
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
