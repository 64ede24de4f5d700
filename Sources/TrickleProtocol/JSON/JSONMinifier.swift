public import NIOCore
import TrickleRelaySupport

/// Removes insignificant whitespace (outside strings) from JSON text, leaving every other byte as it was.
///
/// This is the only change "verbatim" allows (DESIGN.md "Wire format"): a pretty-printed envelope becomes one
/// line while key order, number spelling and escapes survive. The input must already be valid JSON.
public enum JSONMinifier {
    /// Whether `bytes` contain whitespace outside strings (and so would change when minified).
    public static func needsMinifying(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var found = false
        Self.forEachByte(bytes) { _, isInsignificant in
            if isInsignificant { found = true }
            return !found
        }
        return found
    }

    /// Returns `buffer` without whitespace outside strings (the same buffer when there is none).
    public static func minify(_ buffer: ByteBuffer) -> ByteBuffer {
        let needed = buffer.withUnsafeReadableBytes { Self.needsMinifying($0) }
        guard needed else { return buffer }
        var output = ByteBufferAllocator().buffer(capacity: buffer.readableBytes)
        buffer.withUnsafeReadableBytes { bytes in
            Self.forEachByte(bytes) { byte, isInsignificant in
                if !isInsignificant { output.writeInteger(byte) }
                return true
            }
        }
        return output
    }

    /// Walks the bytes, telling for each whether it is insignificant whitespace; `body` returns `false` to stop.
    private static func forEachByte(_ bytes: UnsafeRawBufferPointer, _ body: (UInt8, Bool) -> Bool) {
        var inString = false
        var escaped = false
        for byte in bytes {
            var isInsignificant = false
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else {
                isInsignificant = byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
            }
            guard body(byte, isInsignificant) else { return }
        }
    }
}
