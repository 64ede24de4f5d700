public import NIOCore
import TrickleRelaySupport

extension ByteBuffer {
    /// Writes `bytes` (UTF-8 text) as a JSON string literal: quotes around it, `"` `\` and control characters
    /// escaped, everything else — UTF-8 included — as it is. A reader that decodes the literal gets `bytes` back
    /// exactly.
    public mutating func writeJSONStringLiteral(_ bytes: UnsafeRawBufferPointer) {
        self.writeInteger(UInt8(ascii: "\""))
        var start = 0
        for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 {
            if index > start { self.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[start..<index])) }
            switch byte {
            case UInt8(ascii: "\""): self.writeString("\\\"")
            case UInt8(ascii: "\\"): self.writeString("\\\\")
            case 0x0A: self.writeString("\\n")
            case 0x0D: self.writeString("\\r")
            case 0x09: self.writeString("\\t")
            default:
                let hex = String(byte, radix: 16)
                self.writeString("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
            }
            start = index + 1
        }
        if start < bytes.count { self.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[start...])) }
        self.writeInteger(UInt8(ascii: "\""))
    }
}
