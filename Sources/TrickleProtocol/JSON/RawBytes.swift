#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Byte comparison of keys and names on the scanning paths: one `memcmp`, not a generic element-by-element loop
/// (which showed as 4 % of a replay's profile).
enum RawBytes {
    /// Whether `bytes` are exactly `other`.
    static func equal(_ bytes: UnsafeRawBufferPointer, _ other: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count == other.count else { return false }
        guard let base = bytes.baseAddress, let otherBase = other.baseAddress else { return true }  // both empty
        return memcmp(base, otherBase, bytes.count) == 0
    }

    /// Whether `bytes` are exactly the UTF-8 of `literal`.
    static func equal(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        Self.equal(bytes, UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }
}
