import TrickleRelaySupport
/// The many-bytes-at-a-time fast path of every string scan (``JSONScanner`` and ``JSONSkim``).
@usableFromInline
enum JSONStringWords {
    /// An index at or after `start`, at or before the first quote, backslash or control character: the first
    /// such byte itself when an 8-byte test finds it (or the last index from which fewer than 8 bytes remain). It
    /// only means "look closer": the caller's byte loop decides exactly. Blocks of 16 are compared as vectors (SSE2 / NEON);
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
                // Where exactly: the first byte the 8-byte test flags (its lowest flag is exact; above it there
                // can be false ones), so the caller's byte loop starts on it instead of stepping up to it — one
                // predictable iteration instead of up to 15 with a mispredicted exit. 0xFF, plain text when
                // non-ASCII does not stop us, is a block hit but no word hit: the byte loop decides from the start.
                for half in 0..<2 {
                    let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index + 8 * half, as: UInt64.self))
                    let flags = Self.wordFlags(word, stopsAtNonASCII: stopsAtNonASCII)
                    if flags != 0 { return index + 8 * half + flags.trailingZeroBitCount / 8 }
                }
                return index
            }
            index += 16
        }
        while index + 8 <= bytes.count {
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            let flags = Self.wordFlags(word, stopsAtNonASCII: stopsAtNonASCII)
            if flags != 0 { return index + flags.trailingZeroBitCount / 8 }
            index += 8
        }
        return index
    }

    /// The high bit of each byte of a little-endian word that may be a quote, a backslash, a control character
    /// (or, with `stopsAtNonASCII`, ≥ 0x80): the usual SWAR tests. The lowest flag is exact; flags above it may be
    /// false (a borrow carries upward).
    @inlinable
    static func wordFlags(_ word: UInt64, stopsAtNonASCII: Bool) -> UInt64 {
        let quotes = word ^ 0x2222_2222_2222_2222
        let backslashes = word ^ 0x5C5C_5C5C_5C5C_5C5C
        let hits =
            ((quotes &- 0x0101_0101_0101_0101) & ~quotes) | ((backslashes &- 0x0101_0101_0101_0101) & ~backslashes)
            | ((word &- 0x2020_2020_2020_2020) & ~word) | (stopsAtNonASCII ? word : 0)
        return hits & 0x8080_8080_8080_8080
    }
}
