import TrickleRelaySupport
/// The many-bytes-at-a-time fast path of every string scan (``JSONScanner`` and ``JSONSkim``).
@usableFromInline
enum JSONStringWords {
    /// An index at or after `start`, at or before the first quote, backslash or control character: that byte
    /// itself when it lies at least 8 bytes before the end (or the last index from which fewer than 8 bytes
    /// remain); the caller's byte loop decides from there. Blocks of 16 are compared as vectors (SSE2 / NEON), the
    /// tail of 8 with the usual SWAR tests for "has a byte equal to" and "has a byte less than".
    ///
    /// - Parameter stopsAtNonASCII: Also stop at a byte ≥ 0x80 (the validating scanner checks
    ///   UTF-8 there); ASCII text, the common case, stays on the fast path either way.
    @inlinable
    static func skipPlainWords(_ bytes: UnsafeRawBufferPointer, from start: Int, stopsAtNonASCII: Bool = false) -> Int {
        guard let base = bytes.baseAddress else { return start }
        var index = start
        let quote = SIMD16<UInt8>(repeating: 0x22)
        let backslash = SIMD16<UInt8>(repeating: 0x5C)
        let space = SIMD16<UInt8>(repeating: 0x20)
        while index + 16 <= bytes.count {
            let block = base.loadUnaligned(fromByteOffset: index, as: SIMD16<UInt8>.self)
            // Control characters, and with `stopsAtNonASCII` bytes ≥ 0x80 too: as signed bytes those are negative,
            // so one signed "less than 0x20" finds both.
            let low =
                stopsAtNonASCII
                ? unsafeBitCast(block, to: SIMD16<Int8>.self) .< SIMD16<Int8>(repeating: 0x20)
                : block .< space
            let hits = (block .== quote) .| (block .== backslash) .| low
            if any(hits) {
                // Exactly where: a mask lane is all ones or all zeros, so the lowest set byte of the two halves is
                // the first special byte (the caller's byte loop starts on it).
                let lanes = unsafeBitCast(hits, to: (UInt64, UInt64).self)
                let firstHalf = UInt64(littleEndian: lanes.0)
                if firstHalf != 0 { return index + firstHalf.trailingZeroBitCount / 8 }
                return index + 8 + UInt64(littleEndian: lanes.1).trailingZeroBitCount / 8
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
