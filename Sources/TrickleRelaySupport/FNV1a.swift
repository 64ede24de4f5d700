/// FNV-1a, 64 bits: a fast, well-spread hash of a few bytes (an event id, a file's contents) where a collision
/// costs little and is not an attack surface. Not a cryptographic hash.
public enum FNV1a {
    /// The hash of `bytes`.
    @inlinable
    public static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        return hash
    }
}
