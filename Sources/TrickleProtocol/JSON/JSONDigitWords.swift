/// Counting ASCII digits eight bytes at a time: the number fast path of ``JSONScanner``.
@usableFromInline
enum JSONDigitWords {
    /// How many of a little-endian word's bytes, from its first, are ASCII digits (0–8).
    ///
    /// A byte is a digit when its high nibble is 3 both as it is and after adding 6 (0x30–0x39 stay in 0x3_,
    /// 0x3A–0x3F move to 0x4_). Adding 6 can carry into the byte above only out of a byte ≥ 0xFA, which is not a
    /// digit itself, so the lowest non-digit byte is always found exactly.
    @inlinable
    static func leadingDigits(_ word: UInt64) -> Int {
        let highNibbles: UInt64 = 0xF0F0_F0F0_F0F0_F0F0
        let threes: UInt64 = 0x3030_3030_3030_3030
        let off = ((word & highNibbles) ^ threes) | (((word &+ 0x0606_0606_0606_0606) & highNibbles) ^ threes)
        // A high bit per non-zero byte of `off` (exact: adding 0x7F to a byte's low seven bits never carries out).
        let nonDigits = (((off & 0x7F7F_7F7F_7F7F_7F7F) &+ 0x7F7F_7F7F_7F7F_7F7F) | off) & 0x8080_8080_8080_8080
        return nonDigits.trailingZeroBitCount / 8
    }
}
