public import NIOCore

/// Removes insignificant whitespace (outside strings) from JSON text, leaving every other byte as it was.
///
/// This is the only change "verbatim" allows (DESIGN.md "Wire format"): a pretty-printed envelope becomes one
/// line while key order, number spelling and escapes survive. The input must already be valid JSON.
public enum JSONMinifier {
    /// Whether `bytes` contain whitespace outside strings (and so would change when minified).
    public static func needsMinifying(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var inString = false
        var escaped = false
        for byte in bytes {
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
            } else if byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
                return true
            }
        }
        return false
    }

    /// Returns `buffer` without whitespace outside strings (the same buffer when there is none).
    public static func minify(_ buffer: ByteBuffer) -> ByteBuffer {
        let needed = buffer.withUnsafeReadableBytes { Self.needsMinifying($0) }
        guard needed else { return buffer }
        var output = ByteBufferAllocator().buffer(capacity: buffer.readableBytes)
        buffer.withUnsafeReadableBytes { bytes in
            var inString = false
            var escaped = false
            for byte in bytes {
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
                } else if byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
                    continue
                }
                output.writeInteger(byte)
            }
        }
        return output
    }
}
